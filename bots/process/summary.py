"""What `easel run` tells the operator once it is connected: where to find the bot, how to stop it, and
what is missing from a safe set-up. Pure functions; the runner logs the lines."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from bots.process.config import Settings

# The Discord permissions Easel needs, and no more (bit positions from Discord's documentation).
DISCORD_PERMISSIONS: dict[str, int] = {
    "View Channel": 1 << 10,
    "Send Messages": 1 << 11,
    "Embed Links": 1 << 14,
    "Attach Files": 1 << 15,
    "Read Message History": 1 << 16,
    "Send Messages in Threads": 1 << 38,
}
DISCORD_SCOPES = "bot applications.commands"
OPERATORS_UNSET = "EASEL_OPERATORS is unset"


def discord_permissions() -> int:
    total = 0
    for bit in DISCORD_PERMISSIONS.values():
        total |= bit
    return total


def discord_invite_url(application_id: str) -> str:
    query = urlencode({"client_id": application_id, "scope": DISCORD_SCOPES, "permissions": discord_permissions()})
    return f"https://discord.com/oauth2/authorize?{query}"


def startup_summary(settings: Settings, telegram_username: str | None, discord_app_id: str | None) -> list[str]:
    """Lines for the log after start-up. The last one, when EASEL_OPERATORS is unset, is a warning (it
    starts with OPERATORS_UNSET; `log_startup_summary` logs it at WARNING)."""
    lines = []
    if telegram_username:
        lines.append(
            f"Telegram: your bot is https://t.me/{telegram_username}; open it and send "
            "`/imagine a lighthouse at dusk`, or add it to a group"
        )
    if discord_app_id:
        lines.append(
            f"Discord: invite the bot to a server with {discord_invite_url(discord_app_id)} (scopes "
            f"{DISCORD_SCOPES}; permissions {', '.join(DISCORD_PERMISSIONS)}), then use /imagine there"
        )
    lines.append(
        f"Stop Easel with Ctrl-C (or SIGTERM: docker stop, systemctl stop); running rounds get up to "
        f"{settings.shutdown_grace:g} s to finish, the rest are refunded"
    )
    if not settings.operators:
        lines.append(
            f"{OPERATORS_UNSET}: no one can manage quotas everywhere and nobody can exceed "
            "EASEL_MAX_DAILY_CREDITS; set it to your own ids (telegram:<your id>,discord:<your id>)"
        )
    return lines


def log_startup_summary(
    log: logging.Logger, settings: Settings, telegram_username: str | None, discord_app_id: str | None
) -> None:
    for line in startup_summary(settings, telegram_username, discord_app_id):
        log.log(logging.WARNING if line.startswith(OPERATORS_UNSET) else logging.INFO, "%s", line)
