"""Typed settings, read once from the environment and an optional `.env`, validated at start-up.

`SPECS` is the single list of every setting: the parser, `deploy/env.example` and the README's
configuration reference are all checked against it by a test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.events import Platform, Quality, Size


@dataclass(frozen=True, slots=True)
class Spec:
    env: str
    default: str  # "" means unset
    doc: str


SPECS: tuple[Spec, ...] = (
    Spec("OPENAI_API_KEY", "", "Key for the image provider (required)."),
    Spec("OPENAI_BASE_URL", "", "Any OpenAI-compatible endpoint; unset uses the SDK's default."),
    Spec("DISCORD_TOKEN", "", "Set it and `easel run` starts the Discord bot."),
    Spec("TELEGRAM_TOKEN", "", "Set it and `easel run` starts the Telegram bot."),
    Spec("EASEL_DATA_DIR", "./data", "Folder for `easel.db` (SQLite) and the image cache."),
    Spec(
        "EASEL_DAILY_CREDITS",
        "10",
        "Credits each user gets per community per UTC day, unless a moderator says otherwise.",
    ),
    Spec("EASEL_OPERATORS", "", "Bot owners, moderators everywhere: `telegram:123,discord:456`."),
    Spec("EASEL_IMAGE_MODEL", "gpt-image-2", "Image model."),
    Spec(
        "EASEL_IMAGE_API",
        "responses",
        "`responses` (multi-turn through the Responses API) or `images` (Images API).",
    ),
    Spec("EASEL_HOST_MODEL", "gpt-5.5", "Mainline model that hosts the image tool on the Responses route."),
    Spec("EASEL_TELEGRAM_API_URL", "https://api.telegram.org", "Root of the Bot API server."),
    Spec("EASEL_DISCORD_API_URL", "https://discord.com/api/v10", "Discord REST base, version included."),
    Spec("EASEL_DISCORD_GATEWAY_URL", "", "Discord gateway websocket URL; unset uses the library's default."),
    Spec(
        "EASEL_HTTP_PORT",
        "",
        "Serve /healthz, /readyz, /metrics (and the Telegram webhook) on this port; unset turns the HTTP server off.",
    ),
    Spec("EASEL_HTTP_HOST", "127.0.0.1", "Address the HTTP server listens on (0.0.0.0 in a container)."),
    Spec(
        "EASEL_PROVIDER_TIMEOUT",
        "240",
        "Seconds one image call may take before it is abandoned (and not charged).",
    ),
    Spec("EASEL_PROVIDER_CONCURRENCY", "8", "Global cap on image calls in flight; further rounds queue."),
    Spec("EASEL_USER_CONCURRENCY", "2", "Rounds one user may have queued or running at once."),
    Spec("EASEL_QUEUE_LIMIT", "200", "Rounds that may wait for a provider slot before new ones are refused."),
    Spec("EASEL_PARTIAL_IMAGES", "2", "Partial previews to ask the provider to stream (0-3)."),
    Spec(
        "EASEL_PROVIDER_RETRIES",
        "2",
        "Easel's own retries of an image call, only where safe (connection refused, short 429, 5xx before any output).",
    ),
    Spec("EASEL_CREDIT_COSTS", "", "Overrides of the credit table, e.g. `landscape/high=6,square/low=1`."),
    Spec(
        "EASEL_PRICES",
        "text_in=5,image_in=10,image_out=40",
        "USD per million tokens, for the estimated spend in usage reports.",
    ),
    Spec("EASEL_MAX_PROMPT_CHARS", "4000", "Longest prompt or instruction accepted."),
    Spec("EASEL_MAX_INPUT_BYTES", "20000000", "Largest input image downloaded from chat, in bytes."),
    Spec("EASEL_MAX_INPUT_PIXELS", "40000000", "Largest input image decoded, in pixels (decompression bombs)."),
    Spec(
        "EASEL_IMAGE_CACHE_DAYS",
        "30",
        "Days an image stays in the cache (older rounds can still be edited through the provider's stored response).",
    ),
    Spec("EASEL_IMAGE_CACHE_MB", "2048", "Cap on the image cache's size; the oldest files go first."),
    Spec(
        "EASEL_SHUTDOWN_GRACE",
        "30",
        "Seconds running rounds may finish after SIGTERM before they are refunded.",
    ),
    Spec(
        "EASEL_TELEGRAM_WEBHOOK_URL",
        "",
        "Public HTTPS URL of Easel's webhook endpoint; set it to use a "
        "webhook instead of polling (needs EASEL_HTTP_PORT).",
    ),
    Spec(
        "EASEL_TELEGRAM_WEBHOOK_SECRET",
        "",
        "Secret Telegram sends back in X-Telegram-Bot-Api-Secret-Token "
        "(1-256 of A-Z a-z 0-9 _ -); required with a webhook URL.",
    ),
    Spec("EASEL_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR."),
    Spec("EASEL_LOG_FORMAT", "text", "`text` or `json` (one object a line)."),
)

# Never echoed in messages, even when invalid.
SECRET_NAMES = frozenset({"OPENAI_API_KEY", "DISCORD_TOKEN", "TELEGRAM_TOKEN", "EASEL_TELEGRAM_WEBHOOK_SECRET"})

SIZES: dict[Size, str] = {
    Size.SQUARE: "1024x1024",
    Size.PORTRAIT: "1024x1536",
    Size.LANDSCAPE: "1536x1024",
}

# Credits per image: 1 at the default (square, medium). Larger and higher quality cost more, roughly in
# proportion to the provider's price.
DEFAULT_COSTS: dict[tuple[Size, Quality], int] = {
    (Size.SQUARE, Quality.LOW): 1,
    (Size.SQUARE, Quality.MEDIUM): 1,
    (Size.SQUARE, Quality.HIGH): 4,
    (Size.PORTRAIT, Quality.LOW): 1,
    (Size.PORTRAIT, Quality.MEDIUM): 2,
    (Size.PORTRAIT, Quality.HIGH): 6,
    (Size.LANDSCAPE, Quality.LOW): 1,
    (Size.LANDSCAPE, Quality.MEDIUM): 2,
    (Size.LANDSCAPE, Quality.HIGH): 6,
}


@dataclass(frozen=True, slots=True)
class Settings:
    openai_api_key: str = field(repr=False)
    openai_base_url: str | None = None
    discord_token: str | None = field(default=None, repr=False)
    telegram_token: str | None = field(default=None, repr=False)
    data_dir: Path = Path("./data")
    daily_credits: int = 10
    operators: frozenset[tuple[Platform, str]] = frozenset()
    image_model: str = "gpt-image-2"
    image_api: str = "responses"
    host_model: str = "gpt-5.5"
    telegram_api_url: str = "https://api.telegram.org"
    discord_api_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str | None = None
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    provider_timeout: float = 240.0
    provider_concurrency: int = 8
    user_concurrency: int = 2
    queue_limit: int = 200
    partial_images: int = 2
    provider_retries: int = 2
    credit_costs: Mapping[tuple[Size, Quality], int] = field(default_factory=lambda: dict(DEFAULT_COSTS))
    prices: Mapping[str, float] = field(default_factory=lambda: {"text_in": 5.0, "image_in": 10.0, "image_out": 40.0})
    max_prompt_chars: int = 4000
    max_input_bytes: int = 20_000_000
    max_input_pixels: int = 40_000_000
    image_cache_days: float = 30.0
    image_cache_mb: int = 2048
    shutdown_grace: float = 30.0
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    log_format: str = "text"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "easel.db"

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction filter."""
        values = [self.openai_api_key, self.discord_token, self.telegram_token, self.telegram_webhook_secret]
        return [v for v in values if v]

    def is_operator(self, platform: Platform, user_id: str) -> bool:
        return (platform, user_id) in self.operators

    def cost(self, size: Size, quality: Quality) -> int:
        return self.credit_costs[(size, quality)]


def read_dotenv(path: Path) -> dict[str, str]:
    """A small `.env` reader: KEY=VALUE lines, `#` comments, optional `export` and surrounding quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name.strip()] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Read every setting once. Real environment variables win over `.env`. Raises `ConfigError` naming the
    first bad variable. `OPENAI_API_KEY` is checked by the commands that need it, not here."""
    env: dict[str, str] = read_dotenv(dotenv) if dotenv is not None else {}
    env.update(os.environ if environ is None else environ)
    raw = {spec.env: (env.get(spec.env) or "").strip() or spec.default for spec in SPECS}
    parsed: dict[str, Any] = {}

    def take(name: str, attr: str, conv: Callable[[str], Any]) -> None:
        value = raw[name]
        if value == "":
            return
        try:
            parsed[attr] = conv(value)
        except (ValueError, KeyError) as exc:
            shown = "(value hidden)" if name in SECRET_NAMES else repr(value)
            raise ConfigError(f"{name}={shown} is not valid: {exc}") from None

    for name, attr, conv in _parsers():
        take(name, attr, conv)

    settings = Settings(**{"openai_api_key": "", **parsed})
    if settings.telegram_webhook_url and not settings.telegram_webhook_secret:
        raise ConfigError("EASEL_TELEGRAM_WEBHOOK_SECRET is required when EASEL_TELEGRAM_WEBHOOK_URL is set")
    if settings.telegram_webhook_url and settings.http_port is None:
        raise ConfigError("EASEL_HTTP_PORT is required when EASEL_TELEGRAM_WEBHOOK_URL is set")
    return settings


def _parsers() -> tuple[tuple[str, str, Callable[[str], Any]], ...]:
    """Each variable, the Settings field it fills, and how its text becomes a value."""
    return (
        ("OPENAI_API_KEY", "openai_api_key", str),
        ("OPENAI_BASE_URL", "openai_base_url", _url),
        ("DISCORD_TOKEN", "discord_token", str),
        ("TELEGRAM_TOKEN", "telegram_token", str),
        ("EASEL_DATA_DIR", "data_dir", lambda v: Path(v).expanduser()),
        ("EASEL_DAILY_CREDITS", "daily_credits", _int_range(0, 1_000_000)),
        ("EASEL_OPERATORS", "operators", _operators),
        ("EASEL_IMAGE_MODEL", "image_model", _nonblank),
        ("EASEL_IMAGE_API", "image_api", _choice("responses", "images")),
        ("EASEL_HOST_MODEL", "host_model", _nonblank),
        ("EASEL_TELEGRAM_API_URL", "telegram_api_url", lambda v: _url(v).rstrip("/")),
        ("EASEL_DISCORD_API_URL", "discord_api_url", lambda v: _url(v).rstrip("/")),
        ("EASEL_DISCORD_GATEWAY_URL", "discord_gateway_url", _ws_url),
        ("EASEL_HTTP_PORT", "http_port", _int_range(0, 65535)),
        ("EASEL_HTTP_HOST", "http_host", _nonblank),
        ("EASEL_PROVIDER_TIMEOUT", "provider_timeout", _float_range(1, 3600)),
        ("EASEL_PROVIDER_CONCURRENCY", "provider_concurrency", _int_range(1, 1000)),
        ("EASEL_USER_CONCURRENCY", "user_concurrency", _int_range(1, 100)),
        ("EASEL_QUEUE_LIMIT", "queue_limit", _int_range(1, 100_000)),
        ("EASEL_PARTIAL_IMAGES", "partial_images", _int_range(0, 3)),
        ("EASEL_PROVIDER_RETRIES", "provider_retries", _int_range(0, 10)),
        ("EASEL_CREDIT_COSTS", "credit_costs", _costs),
        ("EASEL_PRICES", "prices", _prices),
        ("EASEL_MAX_PROMPT_CHARS", "max_prompt_chars", _int_range(1, 32_000)),
        ("EASEL_MAX_INPUT_BYTES", "max_input_bytes", _int_range(1024, 50_000_000)),
        ("EASEL_MAX_INPUT_PIXELS", "max_input_pixels", _int_range(1024, 178_000_000)),
        ("EASEL_IMAGE_CACHE_DAYS", "image_cache_days", _float_range(0.01, 36500)),
        ("EASEL_IMAGE_CACHE_MB", "image_cache_mb", _int_range(1, 10_000_000)),
        ("EASEL_SHUTDOWN_GRACE", "shutdown_grace", _float_range(0, 3600)),
        ("EASEL_TELEGRAM_WEBHOOK_URL", "telegram_webhook_url", _url),
        ("EASEL_TELEGRAM_WEBHOOK_SECRET", "telegram_webhook_secret", _webhook_secret),
        ("EASEL_LOG_LEVEL", "log_level", lambda v: _choice("DEBUG", "INFO", "WARNING", "ERROR")(v.upper())),
        ("EASEL_LOG_FORMAT", "log_format", _choice("text", "json")),
    )


def _nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _ws_url(value: str) -> str:
    if not value.startswith(("ws://", "wss://")):
        raise ValueError("must start with ws:// or wss://")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def conv(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return conv


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def conv(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return conv


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def conv(value: str) -> float:
        number = float(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return number

    return conv


def _operators(value: str) -> frozenset[tuple[Platform, str]]:
    result: set[tuple[Platform, str]] = set()
    for item in filter(None, (part.strip() for part in value.split(","))):
        platform, sep, user_id = item.partition(":")
        if not sep or not user_id.strip().lstrip("-").isdigit():
            raise ValueError(f"{item!r} is not platform:numeric_id")
        result.add((Platform(platform.strip().lower()), user_id.strip()))
    return frozenset(result)


def _costs(value: str) -> dict[tuple[Size, Quality], int]:
    table = dict(DEFAULT_COSTS)
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, _, number = item.partition("=")
        size, _, quality = key.strip().partition("/")
        cost = int(number)
        if cost < 0:
            raise ValueError(f"{item!r}: a cost cannot be negative")
        table[(Size(size.strip()), Quality(quality.strip()))] = cost
    return table


def _prices(value: str) -> dict[str, float]:
    prices = {"text_in": 5.0, "image_in": 10.0, "image_out": 40.0}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, _, number = item.partition("=")
        if key.strip() not in prices:
            raise ValueError(f"unknown price {key.strip()!r}; use text_in, image_in, image_out")
        prices[key.strip()] = float(number)
    return prices


def _webhook_secret(value: str) -> str:
    if not 1 <= len(value) <= 256 or not all(c.isascii() and (c.isalnum() or c in "_-") for c in value):
        raise ValueError("use 1-256 characters of A-Z, a-z, 0-9, _ and -")
    return value
