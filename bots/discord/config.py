"""Discord's settings, declared once here (see core/settings.py for how a declaration works)."""

# `option(...)` returns a `dataclasses.field` whose default is a factory, which RUF009 cannot see.
# ruff: noqa: RUF009

from __future__ import annotations

import re
from dataclasses import dataclass

from core.config import option, root_url, text, ws_url

# base64(user id) . timestamp . HMAC, each part base64url.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Shards:
    """The shards this worker runs: `ids` out of `total`."""

    ids: tuple[int, ...]
    total: int

    def __str__(self) -> str:
        return f"{','.join(map(str, self.ids))}/{self.total}"


def shards(value: str) -> Shards:
    """`0,1/4` -> Shards((0, 1), 4)."""
    listed, sep, total_text = value.replace(" ", "").partition("/")
    usage = "must be shard ids / total, e.g. 0,1/4 (ids from 0 to total-1)"
    if not sep or not re.fullmatch(r"[0-9]+", total_text) or not re.fullmatch(r"[0-9]+(,[0-9]+)*", listed):
        raise ValueError(usage)
    total, ids = int(total_text), tuple(sorted({int(i) for i in listed.split(",")}))
    if not 1 <= total <= 100_000 or any(i >= total for i in ids):
        raise ValueError(usage)
    return Shards(ids, total)


def token_problem(token: str | None) -> str | None:
    """Why DISCORD_TOKEN cannot be a bot token (None when its shape is right); never quotes the token."""
    if not token or TOKEN_SHAPE.fullmatch(token):
        return None
    if token.lower().startswith("bot ") and TOKEN_SHAPE.fullmatch(token[4:]):
        return "DISCORD_TOKEN starts with 'Bot ': give the token alone"
    return (
        "DISCORD_TOKEN does not look like a bot token (three parts separated by dots); copy it from the "
        "Developer Portal, your application, Bot, Reset Token (not the client secret or the public key)"
    )


@dataclass(frozen=True, kw_only=True)
class DiscordSettings:
    discord_token: str | None = option(
        "DISCORD_TOKEN", text, "Set it and `easel run` starts the Discord bot.", secret=True
    )
    discord_api_url: str = option(
        "EASEL_DISCORD_API_URL",
        root_url,
        "Discord REST base, version included (a REST proxy).",
        "https://discord.com/api/v10",
    )
    discord_gateway_url: str | None = option(
        "EASEL_DISCORD_GATEWAY_URL",
        ws_url,
        "Discord gateway websocket URL (a gateway proxy); unset uses the library's default.",
    )
    discord_shards: Shards | None = option(
        "EASEL_DISCORD_SHARDS",
        shards,
        "The Discord shards this worker runs, `0,1/4` (ids / total); unset runs all shards in one process.",
    )
