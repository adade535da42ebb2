"""Telegram's settings, declared once here (see core/settings.py for how a declaration works)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.config import http_url, option, root_url, text
from core.errors import ConfigError

# `<bot id>:<secret>`, as @BotFather gives it. The secret's length is not checked: a token that is merely
# truncated is refused by Telegram itself, with a message saying so.
TOKEN_SHAPE = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")
WEBHOOK_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,256}")


def webhook_secret(value: str) -> str:
    if not WEBHOOK_SECRET_SHAPE.fullmatch(value):
        raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
    return value


def token_problem(token: str | None) -> str | None:
    """Why TELEGRAM_TOKEN cannot be a bot token (None when its shape is right); never quotes the token."""
    if not token or TOKEN_SHAPE.fullmatch(token):
        return None
    if token.lower().startswith("bot") and TOKEN_SHAPE.fullmatch(token[3:]):
        return "TELEGRAM_TOKEN starts with 'bot': give the token alone, as @BotFather shows it (digits:letters)"
    return (
        "TELEGRAM_TOKEN does not look like a bot token (digits, a colon, then letters, digits, _ and -, as "
        "@BotFather shows it); copy it again from @BotFather"
    )


@dataclass(frozen=True, kw_only=True)
class TelegramSettings:
    telegram_token: str | None = option(
        "TELEGRAM_TOKEN", text, "Set it and `easel run` starts the Telegram bot.", secret=True
    )
    telegram_api_url: str = option(
        "EASEL_TELEGRAM_API_URL",
        root_url,
        "Root of the Bot API server: calls go to {root}/bot<token>/<method> (a self-hosted Bot API server).",
        "https://api.telegram.org",
    )
    telegram_webhook_url: str | None = option(
        "EASEL_TELEGRAM_WEBHOOK_URL",
        http_url,
        "Public HTTPS URL of Easel's webhook endpoint; set it to use a webhook instead of polling (needs "
        "EASEL_HTTP_PORT and EASEL_TELEGRAM_WEBHOOK_SECRET).",
    )
    telegram_webhook_secret: str | None = option(
        "EASEL_TELEGRAM_WEBHOOK_SECRET",
        webhook_secret,
        "Secret Telegram sends back in X-Telegram-Bot-Api-Secret-Token (1-256 of A-Z a-z 0-9 _ -); required "
        "with a webhook URL.",
        secret=True,
    )

    def check_settings(self) -> None:
        if self.telegram_webhook_url and not self.telegram_webhook_secret:
            raise ConfigError("EASEL_TELEGRAM_WEBHOOK_SECRET is required when EASEL_TELEGRAM_WEBHOOK_URL is set")
