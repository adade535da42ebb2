"""The process's own settings, and `Settings`: the core's, each platform's and the process's sections in
one flat, typed object, built by the composition root. Each setting is declared once, in its owner's
section (see core/settings.py); `SECTIONS` is the one place that lists the owners."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bots.discord.config import DiscordSettings
from bots.discord.config import token_problem as discord_token_problem
from bots.telegram.config import TelegramSettings
from bots.telegram.config import token_problem as telegram_token_problem
from core.config import Declaration, choice, declarations, load, nonblank, number, option, whole
from core.errors import ConfigError
from core.settings import CoreSettings


@dataclass(frozen=True, kw_only=True)
class ProcessSettings:
    http_port: int | None = option(
        "EASEL_HTTP_PORT",
        whole(0, 65535),
        "Serve /healthz, /readyz, /metrics (and the Telegram webhook) on this port; unset turns the HTTP "
        "server off.",
    )
    http_host: str = option(
        "EASEL_HTTP_HOST", nonblank, "Address the HTTP server listens on (0.0.0.0 in a container).", "127.0.0.1"
    )
    shutdown_grace: float = option(
        "EASEL_SHUTDOWN_GRACE",
        number(0, 3600),
        "Seconds running rounds may finish after SIGTERM before they are refunded (the whole stop must fit "
        "in Docker's 10 s stop timeout).",
        "6",
    )
    log_level: str = option(
        "EASEL_LOG_LEVEL", choice("DEBUG", "INFO", "WARNING", "ERROR", fold=True), "DEBUG, INFO, WARNING or ERROR.",
        "INFO",
    )
    log_format: str = option("EASEL_LOG_FORMAT", choice("text", "json"), "`text` or `json` (one object a line).",
                             "text")


# The order of the sections is the order of the generated docs.
SECTIONS: tuple[type, ...] = (CoreSettings, TelegramSettings, DiscordSettings, ProcessSettings)


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings(ProcessSettings, DiscordSettings, TelegramSettings, CoreSettings):
    """Every setting, one attribute each. Bases are listed in reverse: a dataclass collects fields from its
    last base first, so the docs and `repr` follow SECTIONS."""

    def check_settings(self) -> None:
        if self.telegram_webhook_url and self.http_port is None:
            raise ConfigError("EASEL_HTTP_PORT is required when EASEL_TELEGRAM_WEBHOOK_URL is set")


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Every setting from the environment and `.env` (see `core.settings.load`)."""
    return load(Settings, environ, dotenv)


def all_declarations() -> tuple[Declaration, ...]:
    return declarations(Settings)


def check_tokens(settings: Settings) -> None:
    """Refuse a platform token of the wrong shape before any connection (`easel run` only: the console
    needs no platform token)."""
    for problem in (telegram_token_problem(settings.telegram_token), discord_token_problem(settings.discord_token)):
        if problem:
            raise ConfigError(problem)
