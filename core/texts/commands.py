"""Descriptions of the chat commands for registration at start-up, in every language Easel speaks.

The words live in `locale/<lang>/commands.po` under ids `cmd.<key>`; `<key>` is the stable key used here:

- `tg.<command>`: Telegram `setMyCommands` (`telegram_commands(lang)` gives them in menu order, and
  `telegram_languages()` the `language_code`s to register besides the default list).
- `dc.<command>`, `dc.<command>.<option>`, `dc.quota.<sub>[.<option>]`: Discord descriptions (English is the
  description itself; `discord_localizations(key)` gives `description_localizations`).
- `dc.edit_image`: the message context-menu command has no description; its entry is a *name*. The contract
  fixes the name `Edit image`; its localisations are offered for `name_localizations` only if the team
  decides that showing a localised name leaves the contract intact (the registered `name` does not change).

Command, option and choice names are the contract and stay English: only descriptions are localised.

zh-TW gets the Simplified Chinese text: Easel has no Traditional Chinese catalog, and a member whose client
is set to zh-TW is answered in Simplified Chinese (see `pick_language`), so the command menu matches the
replies. Simplified text is readable to Traditional readers; a half-Traditional bot would not be consistent.
"""

from __future__ import annotations

from core.texts import DEFAULT_LANGUAGE, say
from core.texts.catalog import languages, load

PREFIX = "cmd."

TELEGRAM_COMMANDS = ("imagine", "cancel", "quota", "usage", "language", "help", "start")
"""Telegram's command menu, in order (the command names are the contract's)."""

DISCORD_LOCALES = {"zh-CN": "zh", "zh-TW": "zh"}
"""Discord locale -> Easel catalog language, for every Discord locale Easel localises."""


def keys() -> tuple[str, ...]:
    """Every stable key with a description in the English catalog."""
    entries = load(DEFAULT_LANGUAGE).entries
    return tuple(sorted(msg_id.removeprefix(PREFIX) for msg_id in entries if msg_id.startswith(PREFIX)))


def descriptions(lang: str) -> dict[str, str]:
    """Every command description in `lang`, keyed by stable key (`tg.imagine`, `dc.quota.set.daily` ...);
    English where `lang` lacks one."""
    return {key: say(lang, PREFIX + key) for key in keys()}


def description(key: str, lang: str = DEFAULT_LANGUAGE) -> str:
    """One description, by stable key or full message id."""
    return say(lang, _msg_id(key))


def discord_localizations(msg_id: str) -> dict[str, str]:
    """`{"zh-CN": ..., "zh-TW": ...}` for a Discord description, by stable key (`dc.imagine.size`) or full
    message id (`cmd.dc.imagine.size`). A locale whose catalog lacks the text is left out (Discord then
    shows the English description)."""
    full = _msg_id(msg_id)
    if full not in load(DEFAULT_LANGUAGE).entries:
        raise KeyError(f"no command description {full!r} in the English catalog")
    out: dict[str, str] = {}
    for locale, lang in DISCORD_LOCALES.items():
        if lang in languages() and full in load(lang).entries:
            out[locale] = say(lang, full)
    return out


def telegram_languages() -> list[str]:
    """The `language_code`s for which `setMyCommands` is called besides the default (English) list."""
    return [lang for lang in languages() if lang != DEFAULT_LANGUAGE and _has_commands(lang)]


def telegram_commands(lang: str) -> list[tuple[str, str]]:
    """`(command, description)` pairs for `setMyCommands` in `lang`, in menu order."""
    return [(name, say(lang, f"{PREFIX}tg.{name}")) for name in TELEGRAM_COMMANDS]


def _msg_id(key: str) -> str:
    return key if key.startswith(PREFIX) else PREFIX + key


def _has_commands(lang: str) -> bool:
    return any(msg_id.startswith(PREFIX + "tg.") for msg_id in load(lang).entries)
