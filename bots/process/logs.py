"""Process logging: one line per event (text or JSON), context fields, and redaction of every secret.

`setup_logging` installs one stream handler on the root logger and attaches the filters to *every* root
handler, because a filter on a logger does not see records that propagate from library loggers (httpx logs
Telegram URLs, which contain the bot token). Handlers added to the root later do not get the filters; call
`setup_logging` again, or attach `RedactingFilter` yourself.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, TextIO
from urllib.parse import quote

from bots.process.config import Settings

REDACTED = "[redacted]"

# Context fields shown first and in this order; any other field given to `log_context` follows, sorted.
CONTEXT_FIELDS = ("platform", "community", "round_id", "request_id")

# Libraries that log request URLs (with the Telegram token in them) at INFO or DEBUG.
QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "hpack")

_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "easel_log_context", default=MappingProxyType({})
)

# Shape-based patterns, for secrets we were not told about (a second bot's token, a key in an error body).
# Each maps to its replacement; groups keep the harmless part of the match so lines stay readable.
# Patterns that start with a character class begin with a negative lookbehind on that class, so a match is
# only tried at the start of a run: without it a long run (a base64 blob in a debug line) costs O(n^2).
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A Telegram file URL carries the token and a path into the bot's files: drop the whole URL.
    # (Bounded lengths: a line of many unquoted URLs would otherwise be scanned to its end per URL.)
    (re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,20}+://[^\s\"'<>]{0,1024}?/file/bot[^\s\"'<>]*"),
     REDACTED),
    (re.compile(r"/file/bot[^\s\"'<>]*"), REDACTED),
    # Bot API method URLs: keep the method name, drop the token.
    (re.compile(r"/bot\d+:[^/\s\"'<>?#]+"), "/bot" + REDACTED),
    # Bare Telegram bot tokens.
    (re.compile(r"(?<![A-Za-z0-9_-])\d{6,}+:[A-Za-z0-9_-]{30,}"), REDACTED),
    # Credentials inside any URL (OPENAI_BASE_URL, EASEL_DATABASE_URL): `scheme://user:password@host`.
    (re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,20}+://)[^\s/@\"'<>]{1,256}@"), r"\1" + REDACTED + "@"),
    # Keys in a URL's query string (`?key=...`, `&api-key=...`).
    (re.compile(r"(?i)([?&](?:api[_-]?key|key|access[_-]?token|token|secret|password|sig|signature)=)[^&\s\"'<>#]+"),
     r"\1" + REDACTED),
    # OpenAI keys (sk-..., sk-proj-...).
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{10,}"), REDACTED),
    # Discord interaction and webhook tokens live in URL paths.
    (re.compile(r"(/webhooks/\d+/)[^/\s\"'<>?#]+"), r"\1" + REDACTED),
    (re.compile(r"(/interactions/\d+/)[^/\s\"'<>?#]+"), r"\1" + REDACTED),
    # Authorization headers: `Bearer x` (OpenAI) and `Bot x` (Discord), in any quoting.
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|bot)\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + REDACTED),
    # Token fields inside logged dicts or JSON (discord.py logs gateway events at DEBUG, and an
    # INTERACTION_CREATE carries {'token': '...'}, the interaction's 15-minute credential).
    (re.compile(r"""((?i:["']?(?:access_|refresh_)?token["']?)\s*[:=]\s*["'])[^"']{1,4096}"""), r"\1" + REDACTED),
    # Discord bot tokens: base64(user id) . timestamp . hmac (also catches JWTs, which is fine).
    (re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{20,}+\.[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]{20,}"), REDACTED),
)

# Secrets shorter than this are not redacted by value: replacing every "ab" would destroy the log, and
# such values are not real credentials (Settings validates the real ones' shapes where it can).
MIN_SECRET_LEN = 4


class Redactor:
    """Replaces known secret values and secret-shaped strings in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LEN:
                # A secret may also appear URL-encoded (a token's ':' as %3A in a query string).
                values.update({secret, quote(secret, safe=""), quote(secret)})
        # Longest first so a secret that contains another is replaced whole.
        ordered = sorted(values, key=len, reverse=True)
        self._values = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(REDACTED, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class RedactingFilter(logging.Filter):
    """Handler filter: formats the message (args included), then redacts it, the exception text and the
    stack. The record is changed in place, so every handler after this one sees only redacted text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_easel_redacted", None) is self:
            return True
        try:
            message = record.getMessage()
        except Exception:  # bad format args: never let logging's error path print raw args
            message = f"unformattable log message {record.msg!r} with args {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name in _context_names(record):
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, self.redact(value))
        setattr(record, "_easel_redacted", self)  # noqa: B010 - LogRecord has no such attribute
        return True


class ContextFilter(logging.Filter):
    """Copies the current `log_context` fields onto the record (fields passed with `extra=` win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get()
        for name, value in fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        names = set(getattr(record, "_easel_context", ())) | set(fields)
        names.update(name for name in CONTEXT_FIELDS if hasattr(record, name))
        setattr(record, "_easel_context", tuple(sorted(names)))  # noqa: B010
        return True


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add fields (platform, community, round_id, request_id, ...) to every line logged inside the block,
    in this task and the tasks it creates. `None` values are left out."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def _context_names(record: logging.LogRecord) -> list[str]:
    names: Iterable[str] = getattr(record, "_easel_context", None) or [
        n for n in CONTEXT_FIELDS if hasattr(record, n)
    ]
    known = [n for n in CONTEXT_FIELDS if n in names]
    return known + sorted(n for n in names if n not in CONTEXT_FIELDS)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`2025-01-02T03:04:05.678Z INFO core.studio: round delivered [platform=telegram round_id=42]`, then the
    traceback if any. Line breaks inside the message and context are escaped, so a user's prompt cannot
    forge log lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {_one_line(record.getMessage())}"
        context = " ".join(f"{n}={_one_line(str(getattr(record, n)))}" for n in _context_names(record))
        if context:
            line = f"{line} [{context}]"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{record.stack_info}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, context fields, exc and stack when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _context_names(record):
            if name in entry:  # a context field never hides the line's own time, level, logger or message
                continue
            value = getattr(record, name)
            plain = value is None or isinstance(value, int | float | bool | str)
            entry[name] = value if plain else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


class _EaselHandler(logging.StreamHandler[TextIO]):
    """The handler `setup_logging` owns (a second call replaces it instead of adding another). Without an
    explicit stream it writes to whatever `sys.stderr` is at the time, like logging's last-resort handler,
    so a replaced stderr (pytest's capture, a closed console) never leaves it holding a dead stream."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr  # emit runs under the handler's lock
        super().emit(record)


def setup_logging(settings: Settings, secrets: list[str], *, stream: TextIO | None = None) -> None:
    """Configure root logging from settings (level, text or JSON) and redact `secrets` (plus the secrets
    in `settings`) and anything secret-shaped from every root handler's output. Safe to call again."""
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    for handler in list(root.handlers):
        if isinstance(handler, _EaselHandler):
            root.removeHandler(handler)
    handler = _EaselHandler(stream)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)

    redacting = RedactingFilter([*settings.secrets(), *secrets])
    context = ContextFilter()
    for each in root.handlers:
        for old in list(each.filters):
            if isinstance(old, RedactingFilter | ContextFilter):
                each.removeFilter(old)
        # Context first so its fields are redacted too.
        each.addFilter(context)
        each.addFilter(redacting)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # An exception that escapes main() would be printed raw by Python; send it through the filters instead
    # (an httpx error message contains the request URL, Telegram token included).
    sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, tb)
        return
    logging.getLogger("easel").critical("uncaught exception, exiting", exc_info=(kind, error, tb))
