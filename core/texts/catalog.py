"""The catalog of words: gettext `.po` files read with Babel, one folder per language.

Message ids are symbolic (`quota.left`); the English catalog holds the English wording, so a missing
translation is a test failure, never English text hidden in code. Each part of Easel keeps its messages
in its own file (`core.po`, `telegram.po` ...); a language's files are merged at load time. Plural forms
come from the catalog's own `Plural-Forms` rule, applied by the library to the `count` parameter."""

from __future__ import annotations

import functools
import gettext
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).with_name("locale")


@dataclass(frozen=True, slots=True)
class Entry:
    singular: str
    plurals: tuple[str, ...] = ()  # plural forms, when the message takes `count`


@dataclass(frozen=True, slots=True)
class Language:
    code: str
    entries: dict[str, Entry]
    catalog: Catalog  # for its plural rule

    def plural_index(self, count: int) -> int:
        return _plural_rule(self.catalog.plural_expr)(count)


@functools.cache
def _plural_rule(expr: str) -> Callable[[int], int]:
    # The header's rule is a C expression over `n` ("(n != 1)", "n%10==1 && n%100!=11 ? 0 : 1"); the standard
    # library's gettext compiles it safely (it rejects anything but the plural-expression grammar).
    return gettext.c2py(expr or "0")


def _read(path: Path, locale: str) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


@functools.cache
def load(code: str) -> Language:
    folder = LOCALE_DIR / code
    entries: dict[str, Entry] = {}
    header: Catalog | None = None
    for path in sorted(folder.glob("*.po")):
        catalog = _read(path, code)
        header = header or catalog
        for message in catalog:
            if not message.id:
                continue
            if isinstance(message.id, tuple):
                forms = tuple(str(s) for s in message.string) if isinstance(message.string, tuple) else ()
                entries[str(message.id[0])] = Entry(forms[0] if forms else "", forms)
            else:
                entries[str(message.id)] = Entry(str(message.string))
    if header is None:
        raise LookupError(f"no catalog for language {code!r} in {folder}")
    return Language(code, entries, header)


def languages() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in LOCALE_DIR.iterdir() if p.is_dir() and any(p.glob("*.po"))))
