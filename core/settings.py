"""The core's settings (`CoreSettings`), each declared once with `core.config.option`: its variable, parser,
default and doc. Each platform and the process declare theirs in their package's `config` module, and the
composition root combines the sections into one flat `Settings` class (bots/process/config.py), so every
value stays one attribute away (`settings.daily_credits`, `settings.http_port`).
"""

# `option(...)` returns a `dataclasses.field` whose default is a factory, which RUF009 cannot see.
# ruff: noqa: RUF009

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.events import Platform
from core.spec import DEFAULT_COSTS, CostTable

if TYPE_CHECKING:
    pass

from core.config import (
    LANGUAGES,
    choice,
    cost_table,
    database_url,
    declared_fields,
    default_worker_id,
    flag,
    http_url,
    nonblank,
    number,
    option,
    path,
    platform_ids,
    prices,
    text,
    url_secrets,
    whole,
    worker_id,
)


@dataclass(frozen=True, kw_only=True)
class CoreSettings:
    """What the core needs: the provider, the data, quotas, limits, language. Platform and process settings
    live in their own packages' `config` modules."""

    openai_api_key: str = option("OPENAI_API_KEY", text, "Key for the image provider (required).", secret=True)
    openai_base_url: str | None = option(
        "OPENAI_BASE_URL",
        http_url,
        "Any OpenAI-compatible endpoint; unset uses the SDK's default. Credentials in it (user:password@, "
        "?key=) are kept out of the logs.",
    )
    data_dir: Path = option("EASEL_DATA_DIR", path, "Folder for `easel.db` (SQLite) and the image cache.", "./data")
    database_url: str | None = option(
        "EASEL_DATABASE_URL",
        database_url,
        "`postgresql://user:password@host/db` puts the store in PostgreSQL, shared by every worker; unset "
        "keeps SQLite in EASEL_DATA_DIR. Never echoed; its password is kept out of the logs.",
        secret=True,
    )
    worker_id: str = option(
        "EASEL_WORKER_ID",
        worker_id,
        "This worker's name in the database (which rounds are whose); unset uses hostname-pid.",
        unset=default_worker_id,
    )
    takeover_after: int = option(
        "EASEL_TAKEOVER_AFTER",
        whole(15, 600),
        "Seconds a worker may miss heartbeats (sent every third of it) before the others take over its rounds, "
        "provider slots and updates (PostgreSQL).",
        "30",
    )
    daily_credits: int = option(
        "EASEL_DAILY_CREDITS",
        whole(0, 1_000_000),
        "Credits each user gets per community per UTC day, unless a moderator says otherwise.",
        "10",
    )
    max_daily_credits: int = option(
        "EASEL_MAX_DAILY_CREDITS",
        whole(0, 1_000_000),
        "The most daily credits, or one day's grants, a moderator can give anyone; operators may exceed it.",
        "100",
    )
    operators: frozenset[tuple[Platform, str]] = option(
        "EASEL_OPERATORS",
        platform_ids(negative=False),
        "Bot owners, moderators everywhere: `telegram:123,discord:456` (ASCII digit ids).",
        unset=frozenset,
    )
    communities: frozenset[tuple[Platform, str]] | None = option(
        "EASEL_COMMUNITIES",
        platform_ids(negative=True),
        "When set (`telegram:-100123,discord:456`), Easel works only in these communities and leaves others; "
        "unset works everywhere.",
    )
    daily_budget_usd: float | None = option(
        "EASEL_DAILY_BUDGET_USD",
        number(0, 1_000_000_000),
        "Ceiling on the estimated provider spend per UTC day, all communities together; unset means none.",
    )
    image_model: str = option("EASEL_IMAGE_MODEL", nonblank, "Image model.", "gpt-image-2")
    image_api: str = option(
        "EASEL_IMAGE_API",
        choice("responses", "images"),
        "`responses` (multi-turn through the Responses API) or `images` (Images API).",
        "responses",
    )
    host_model: str = option(
        "EASEL_HOST_MODEL", nonblank, "Mainline model that hosts the image tool on the Responses route.", "gpt-5.5"
    )
    transparent_model: str | None = option(
        "EASEL_TRANSPARENT_MODEL",
        nonblank,
        "Image model for transparent-background requests when EASEL_IMAGE_MODEL refuses them; unset refuses "
        "such requests instead.",
    )
    background_mode: bool = option(
        "EASEL_BACKGROUND_MODE",
        flag,
        "`on`: Responses rounds run in the provider's background mode (resumable, picked up after a restart); "
        "`off` for zero data retention at the provider.",
        "on",
    )
    round_deadline: float = option(
        "EASEL_ROUND_DEADLINE",
        number(10, 86_400),
        "Seconds a round may run in all (background rounds included) before it is cancelled and refunded.",
        "900",
    )
    provider_timeout: float = option(
        "EASEL_PROVIDER_TIMEOUT",
        number(1, 3600),
        "Seconds one foreground image call may take before it is abandoned (and not charged).",
        "240",
    )
    provider_call_timeout: float = option(
        "EASEL_PROVIDER_CALL_TIMEOUT",
        number(1, 3600),
        "Seconds one HTTP call to the provider may wait for an answer (a background round's poll or stream "
        "read; each call, not the round).",
        "60",
    )
    provider_concurrency: int = option(
        "EASEL_PROVIDER_CONCURRENCY", whole(1, 1000), "Global cap on image calls in flight; further rounds queue.", "8"
    )
    user_concurrency: int = option(
        "EASEL_USER_CONCURRENCY", whole(1, 100), "Rounds one user may have queued or running at once.", "2"
    )
    user_rate: int = option(
        "EASEL_USER_RATE",
        whole(1, 10_000),
        "Requests one user may make per minute, refused ones included; more are refused at no cost.",
        "6",
    )
    queue_limit: int = option(
        "EASEL_QUEUE_LIMIT",
        whole(1, 100_000),
        "Rounds that may wait for a provider slot before new ones are refused.",
        "200",
    )
    partial_images: int = option(
        "EASEL_PARTIAL_IMAGES", whole(0, 3), "Partial previews to ask the provider to stream (0-3).", "2"
    )
    provider_retries: int = option(
        "EASEL_PROVIDER_RETRIES",
        whole(0, 10),
        "Easel's own retries of an image call, only where safe (connection refused, short 429, 5xx before any "
        "output).",
        "2",
    )
    cost_table: CostTable = option(
        "EASEL_CREDIT_COSTS",
        cost_table,
        "Overrides of the credit table, shape/quality=credits, e.g. `wide/high=6,square/low=1`.",
        unset=lambda: dict(DEFAULT_COSTS),
    )
    prices: Mapping[str, float] = option(
        "EASEL_PRICES",
        prices,
        "USD per million tokens, for the estimated spend in usage reports and EASEL_DAILY_BUDGET_USD.",
        "text_in=5,image_in=10,image_out=40",
    )
    max_prompt_chars: int = option(
        "EASEL_MAX_PROMPT_CHARS", whole(1, 32_000), "Longest prompt or instruction accepted.", "4000"
    )
    max_input_bytes: int = option(
        "EASEL_MAX_INPUT_BYTES",
        whole(1024, 50_000_000),
        "Largest input image downloaded from chat, in bytes.",
        "20000000",
    )
    max_input_pixels: int = option(
        "EASEL_MAX_INPUT_PIXELS",
        whole(1024, 178_000_000),
        "Largest input image decoded, in pixels (decompression bombs).",
        "40000000",
    )
    image_cache_days: float = option(
        "EASEL_IMAGE_CACHE_DAYS",
        number(0.01, 36500),
        "Days an image stays in the cache (older rounds can still be edited through the provider's stored "
        "response).",
        "30",
    )
    image_cache_mb: int = option(
        "EASEL_IMAGE_CACHE_MB",
        whole(1, 10_000_000),
        "Cap on the image cache's size; the oldest files go first.",
        "2048",
    )
    language: str = option(
        "EASEL_LANGUAGE",
        choice(*LANGUAGES),
        "Default language of replies where the user's own is not known or not offered (`en`, `zh`).",
        "en",
    )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "easel.db"

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"

    def secrets(self) -> list[str]:
        """Every secret value (secret settings, credentials inside URLs), for the log redaction filter."""
        values: list[str] = []
        for attr, declared in declared_fields(type(self)):
            value = getattr(self, attr)
            if declared.secret and isinstance(value, str) and value:
                values.append(value)
        values += url_secrets(self.openai_base_url) + url_secrets(self.database_url)
        return list(dict.fromkeys(values))

    def is_operator(self, platform: Platform, user_id: str) -> bool:
        return (platform, user_id) in self.operators

    def serves(self, platform: Platform, community: str) -> bool:
        """False in a community outside EASEL_COMMUNITIES (when set)."""
        return self.communities is None or (platform, community) in self.communities


# What the core's services receive and type against: the composed `bots.process.config.Settings` is one.
Settings = CoreSettings
