"""How a setting is declared, parsed and loaded, once for every section of settings.

    daily_credits: int = option("EASEL_DAILY_CREDITS", whole(0, 1_000_000), "Credits each user ...", "10")

The default is written once, as the text an operator would type, and parsed by the same parser, so the
value the code sees and the one `deploy/env.example` and the README show cannot disagree. A group of such
fields is a *section*: a frozen, keyword-only dataclass (the core's is `core.settings.CoreSettings`; each
platform and the process declare theirs in their package's `config` module).

`load(cls)` fills any such class from the environment and an optional `.env` (real environment variables
win); `declarations(cls)` lists its settings for the generated docs (deploy/gendocs.py). An unknown
`EASEL_*` variable is logged as a warning with the nearest known name; a bad value stops start-up with a
message that names the variable and what it accepts, and never echoes a secret.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from core.errors import ConfigError
from core.events import Platform
from core.spec import DEFAULT_COSTS, Quality, Shape

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger("easel.settings")

PREFIX = "EASEL_"
_KEY = "easel_setting"
T = TypeVar("T", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class Declaration:
    """One setting: its variable, how its text becomes a value, what the docs say, the default as text."""

    env: str
    parse: Callable[[str], Any]
    doc: str
    default: str = ""  # "" means unset
    secret: bool = False  # never echoed; its value is redacted from the logs


def option(
    env: str,
    parse: Callable[[str], Any],
    doc: str,
    default: str = "",
    *,
    secret: bool = False,
    unset: Callable[[], Any] | None = None,
) -> Any:
    """Declare a setting as a dataclass field. Its default is `parse(default)`; with no default text it is
    `unset()` (None when not given). Secrets are kept out of `repr`."""
    declared = Declaration(env, parse, doc, default, secret)

    def make() -> Any:
        if default:
            return parse(default)
        return unset() if unset is not None else None

    return dataclasses.field(default_factory=make, repr=not secret, metadata={_KEY: declared})


def declared_fields(cls: type[DataclassInstance]) -> Iterator[tuple[str, Declaration]]:
    """(attribute, declaration) of every setting of a section or composed settings class, in order."""
    for f in dataclasses.fields(cls):
        declared = f.metadata.get(_KEY)
        if isinstance(declared, Declaration):
            yield f.name, declared


def declarations(cls: type[DataclassInstance]) -> tuple[Declaration, ...]:
    return tuple(declared for _, declared in declared_fields(cls))


# -- parsers: each raises ValueError with a predicate that completes "NAME ..." -------------------------


def text(value: str) -> str:
    return value


def nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


def http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
        raise ValueError("must be a URL starting with http:// or https://")
    return value


def root_url(value: str) -> str:
    """An http(s) URL without its trailing slash (a base other paths are appended to)."""
    return http_url(value).rstrip("/")


def ws_url(value: str) -> str:
    if not value.startswith(("ws://", "wss://")):
        raise ValueError("must be a URL starting with ws:// or wss://")
    return value


def choice(*allowed: str, fold: bool = False) -> Callable[[str], str]:
    def parse(value: str) -> str:
        candidate = value.upper() if fold else value
        if candidate not in allowed:
            raise ValueError(f"must be one of: {', '.join(allowed)}")
        return candidate

    return parse


def flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise ValueError("must be one of: on, off")


def whole(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", value):
            raise ValueError(f"must be a whole number from {low} to {high}")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return number

    return parse


def number(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            result = float(value)
        except ValueError:
            result = float("nan")
        if not low <= result <= high:  # also refuses nan and inf
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return result

    return parse


def path(value: str) -> Path:
    return Path(value).expanduser()


_MEMBER = re.compile(r"([a-z]+):(-?[0-9]+)")


def platform_ids(*, negative: bool) -> Callable[[str], frozenset[tuple[Platform, str]]]:
    """`telegram:123,discord:456` -> {(Platform.TELEGRAM, "123"), ...}. ASCII digits only: `str.isdigit`
    would accept full-width and other Unicode digits, which no platform uses as an id."""
    platforms = ", ".join(p.value for p in Platform)

    def parse(value: str) -> frozenset[tuple[Platform, str]]:
        result: set[tuple[Platform, str]] = set()
        for item in filter(None, (part.strip() for part in value.split(","))):
            match = _MEMBER.fullmatch(item.replace(" ", "").lower())
            ok = match is not None and match.group(1) in {p.value for p in Platform}
            if match is None or not ok or (not negative and match.group(2).startswith("-")):
                digits = "an id of ASCII digits" + (" (a leading - for groups)" if negative else "")
                raise ValueError(f"has {item!r}, which is not platform:id ({platforms}; {digits})")
            result.add((Platform(match.group(1)), match.group(2)))
        return frozenset(result)

    return parse


def cost_table(value: str) -> dict[tuple[Shape, Quality], int]:
    """`wide/high=6,square/low=1` over the defaults of `core.spec.DEFAULT_COSTS`."""
    table = dict(DEFAULT_COSTS)
    shapes, qualities = ", ".join(s.value for s in Shape), ", ".join(q.value for q in Quality)
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, _, amount = item.partition("=")
        shape, _, quality = key.strip().partition("/")
        if shape.strip() not in {s.value for s in Shape}:
            raise ValueError(f"has {item!r}: the shape must be one of: {shapes}")
        if quality.strip() not in {q.value for q in Quality}:
            raise ValueError(f"has {item!r}: the quality must be one of: {qualities}")
        if not re.fullmatch(r"[0-9]+", amount.strip()):
            raise ValueError(f"has {item!r}: a cost is a whole number of credits, 0 or more")
        table[(Shape(shape.strip()), Quality(quality.strip()))] = int(amount.strip())
    return table


PRICES = ("text_in", "image_in", "image_out")


def prices(value: str) -> dict[str, float]:
    result = {"text_in": 5.0, "image_in": 10.0, "image_out": 40.0}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, _, amount = item.partition("=")
        if key.strip() not in PRICES:
            raise ValueError(f"has {key.strip()!r}; the prices are: {', '.join(PRICES)}")
        result[key.strip()] = number(0, 1_000_000)(amount.strip())
    return result


def database_url(value: str) -> str:
    if not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("must start with postgresql:// or postgres://")
    return value


def worker_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._:@-]{1,100}", value):
        raise ValueError("must be 1-100 characters of A-Z a-z 0-9 . _ : @ -")
    return value


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


LANGUAGES = ("en", "zh")  # the catalogs in core/texts/locale (a test checks they agree)

# Query parameters of a URL whose values are credentials (an endpoint that takes its key in the URL).
_SECRET_QUERY = re.compile(r"(?i)^(?:api[_-]?key|key|token|access[_-]?token|secret|password|sig|signature|code)$")


def url_secrets(url: str | None) -> list[str]:
    """The credentials inside a URL: user and password before `@`, and secret-looking query values."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.username or "", parts.password or ""]
    except ValueError:
        return []
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=False) if _SECRET_QUERY.match(k)]
    return [value for value in found if value]


# -- the core's section -------------------------------------------------------------------------------



# -- loading ------------------------------------------------------------------------------------------


def read_dotenv(file: Path) -> dict[str, str]:
    """A small `.env` reader: KEY=VALUE lines, `#` comments, optional `export` and surrounding quotes."""
    values: dict[str, str] = {}
    if not file.is_file():
        return values
    for raw in file.read_text(encoding="utf-8").splitlines():
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


def unknown_variables(names: Mapping[str, str], known: set[str]) -> list[str]:
    """One warning per `EASEL_*` name that is not a setting, with the nearest known name when there is one."""
    warnings = []
    for name in sorted(n for n in names if n.upper().startswith(PREFIX) and n not in known):
        near = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else ""
        warnings.append(f"{name} is not a setting Easel knows, so it is ignored{hint}")
    return warnings


def load(cls: type[T], environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> T:
    """Read every setting of `cls` once. Real environment variables win over `.env`. Unknown `EASEL_*`
    names are logged as warnings. Raises `ConfigError` naming the first bad variable and what it accepts.
    Each class in `cls`'s bases may define `check_settings(self)`, run after parsing (cross-field rules)."""
    env: dict[str, str] = read_dotenv(dotenv) if dotenv is not None else {}
    env.update(os.environ if environ is None else environ)
    fields = list(declared_fields(cls))
    for warning in unknown_variables(env, {declared.env for _, declared in fields}):
        log.warning("%s", warning)
    values: dict[str, Any] = {}
    for attr, declared in fields:
        raw = (env.get(declared.env) or "").strip()
        if not raw:
            continue
        try:
            values[attr] = declared.parse(raw)
        except (ValueError, KeyError) as exc:
            shown = "" if declared.secret else f" (it is {raw!r})"
            raise ConfigError(f"{declared.env} {exc}{shown}") from None
    settings = cls(**values)
    for klass in reversed(cls.__mro__):
        check = vars(klass).get("check_settings")
        if callable(check):
            check(settings)
    return settings
