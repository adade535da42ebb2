"""Registering the application commands only when they changed.

A bulk overwrite on every start would spend Discord's daily command-creation budget in a crash loop. So start-up
reads what Discord already has (`GET .../commands?with_localizations=true`, which costs no creation) and
overwrites only when Easel's payload differs from it. Discord fills in defaults and adds its own fields (ids,
versions, `contexts` ...), so the comparison looks only at the fields Easel sends, with Discord's defaults
for the ones it leaves out."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

log = logging.getLogger(__name__)

# What Discord returns (or leaves out) for a field Easel sends with its default value.
DEFAULTS: dict[str, Any] = {
    "required": False, "options": [], "choices": [], "name_localizations": {}, "description_localizations": {},
    "nsfw": False, "dm_permission": True, "description": "", "autocomplete": False,
}


async def command_payload(tree: app_commands.CommandTree[Any]) -> list[dict[str, Any]]:
    """The global commands exactly as `CommandTree.sync()` would send them (translations included)."""
    commands = tree.get_commands()
    translator = tree.translator
    if translator is None:
        return [command.to_dict(tree) for command in commands]
    return [await command.get_translated_payload(tree, translator) for command in commands]


def same_commands(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> bool:
    """True when Discord's registered commands already say everything `ours` says."""
    if len(ours) != len(theirs):
        return False
    registered = {(int(c.get("type") or 1), c.get("name")): c for c in theirs}
    return all(_matches(c, registered.get((int(c.get("type") or 1), c.get("name")))) for c in ours)


def _matches(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            return False
        for key, value in ours.items():
            if value is None:  # left to Discord's default
                continue
            other = theirs.get(key)
            if not _matches(value, DEFAULTS.get(key) if other is None else other):
                return False
        return True
    if isinstance(ours, list):
        return isinstance(theirs, list) and len(ours) == len(theirs) and all(map(_matches, ours, theirs))
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return ours is theirs
    if isinstance(ours, int) and isinstance(theirs, str):  # snowflakes and permission bits come as strings
        return str(ours) == theirs
    return bool(ours == theirs)


async def register_commands(client: discord.Client, tree: app_commands.CommandTree[Any]) -> bool:
    """Overwrite the global commands when they differ from Discord's; True when they were written."""
    app_id = client.application_id
    if app_id is None:
        raise RuntimeError("register_commands() before login")
    payload = await command_payload(tree)
    route = discord.http.Route("GET", "/applications/{application_id}/commands", application_id=app_id)
    try:
        registered = await client.http.request(route, params={"with_localizations": "true"})
    except discord.HTTPException as exc:  # cannot tell: write them (the old behaviour)
        log.info("could not read the registered commands (HTTP %s): registering them", exc.status)
        registered = None
    if isinstance(registered, list) and same_commands(payload, registered):
        log.info("Discord: application commands unchanged; not registered again")
        return False
    await client.http.bulk_upsert_global_commands(app_id, payload=payload)
    log.info("Discord: application commands registered")
    return True
