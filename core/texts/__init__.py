"""Every sentence a user can see, by message id, in the user's language: `say(lang, "quota.left", count=3)`.

Wording lives in the catalogs under `core/texts/locale/<lang>/*.po` (see `core.texts.catalog`); no module
builds user-facing text by hand. Numbers are formatted as plain digits in every language."""

from __future__ import annotations

from core.texts.catalog import languages, load

DEFAULT_LANGUAGE = "en"
AUTO = "auto"


def say(lang: str, msg_id: str, /, **params: object) -> str:
    """The message in `lang` (English when the language or the message is missing there), with `params`
    filled in. A `count` parameter selects the plural form by the language's own rule."""
    text = _lookup(lang, msg_id, params) if lang != DEFAULT_LANGUAGE else None
    if text is None:
        text = _lookup(DEFAULT_LANGUAGE, msg_id, params)
    if text is None:
        raise KeyError(f"message {msg_id!r} is not in the English catalog")
    return text.format(**{k: _plain(v) for k, v in params.items()})


def _lookup(lang: str, msg_id: str, params: dict[str, object]) -> str | None:
    try:
        language = load(lang)
    except LookupError:
        return None
    entry = language.entries.get(msg_id)
    if entry is None:
        return None
    count = params.get("count")
    if entry.plurals and isinstance(count, int):
        index = min(language.plural_index(count), len(entry.plurals) - 1)
        return entry.plurals[index] or None
    return entry.singular or None


def _plain(value: object) -> object:
    # Plain digits everywhere: no locale grouping; floats keep the precision the message asks for.
    return value


def pick_language(client: str | None, community: str | None, default: str) -> str:
    """The requester's client language when Easel speaks it, else the community's, else the operator's."""
    offered = languages()
    for candidate in (client, community):
        code = normalise(candidate)
        if code is not None and code in offered:
            return code
    return default if default in offered else DEFAULT_LANGUAGE


def normalise(code: str | None) -> str | None:
    """`zh-CN`, `zh_TW`, `zh-hans` -> `zh`; `en-US` -> `en`; `auto` and blanks -> None."""
    if not code or code == AUTO:
        return None
    return code.replace("_", "-").split("-")[0].lower() or None


__all__ = [
    "AUTO",
    "DEFAULT_LANGUAGE",
    "languages",
    "normalise",
    "pick_language",
    "say",
]
