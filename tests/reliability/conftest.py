"""Shared machinery of the reliability suite: realistic secrets, production logging captured at DEBUG, a
read-only view of the ledger with its invariants, secret scans, and one-line JSON summaries.

Nothing here patches a library: the fakes (tests/fakes) and the real core, provider and adapters are used
as they are; helpers only observe."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import pytest
from discord.gateway import DiscordWebSocket

from bots.process.config import Settings, load_settings
from bots.process.logs import QUIET_LOGGERS, setup_logging
from tests.fakes._base import Call, FakeServer

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench-results"

# Secrets shaped like the real ones, so shape-based redaction is exercised too.
TELEGRAM_TOKEN = "7123456789:AAHk3xQ9vLm2Zt8RfW0pYcJ5nUe4sDgB1oQ"
DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
OPENAI_KEY = "sk-proj-Reliab1lityTestKey0123456789abcdefXYZ"
FILE_URL_MARK = "/file/bot"


def write_summary(name: str, **fields: Any) -> dict[str, Any]:
    """One JSON line per test in bench-results/reliability-<name>.json (gitignored), also printed."""
    line = json.dumps({"test": name, **fields}, sort_keys=True, default=str)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"reliability-{name}.json").write_text(line + "\n", encoding="utf-8")
    print(line)
    return dict(fields)


def env_settings(data_dir: Path, **env: Any) -> Settings:
    # These tests send far more requests per user than a person would; the per-user rate (EASEL_USER_RATE,
    # tested in tests/core/test_rounds.py) would refuse them before the faults under test. A test may set it.
    values = {"OPENAI_API_KEY": OPENAI_KEY, "EASEL_DATA_DIR": str(data_dir), "EASEL_USER_RATE": "10000"}
    values.update({k: str(v) for k, v in env.items()})
    return load_settings(values, dotenv=None)


# ---------------------------------------------------------------------------------------------- logs


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class LogCapture:
    """Production logging (`setup_logging` at DEBUG, text format) written to memory, plus a raw tap in front
    of the redaction filter that only counts what the filter had to remove."""

    stream: io.StringIO
    raw: _Collect
    errors: _Collect

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def raw_hits(self, secrets: Iterable[str]) -> Counter[str]:
        """Logger names whose raw (pre-redaction) messages held a secret: what redaction is relied on for."""
        hits: Counter[str] = Counter()
        for record in self.raw.records:
            text = record.getMessage() if record.args else str(record.msg)
            if any(s in text for s in secrets):
                hits[record.name] += 1
        return hits

    def error_lines(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.errors.records]


@pytest.fixture
def debug_logs() -> Iterator[Callable[[], LogCapture]]:
    """`capture()` installs logging exactly as `easel run` does (`setup_logging` with the secrets of the
    settings) with EASEL_LOG_LEVEL=DEBUG; call it before starting the stack to see start-up lines too."""
    root = logging.getLogger()
    saved_level = root.level
    saved_handlers = list(root.handlers)
    saved_filters = {h: list(h.filters) for h in saved_handlers}
    saved_quiet = {name: logging.getLogger(name).level for name in (*QUIET_LOGGERS, "httpx")}
    saved_hook = sys.excepthook

    def capture() -> LogCapture:
        stream = io.StringIO()
        settings = env_settings(Path("unused"), TELEGRAM_TOKEN=TELEGRAM_TOKEN, DISCORD_TOKEN=DISCORD_TOKEN,
                                EASEL_LOG_LEVEL="DEBUG")
        setup_logging(settings, settings.secrets(), stream=stream)
        raw, errors = _Collect(), _Collect()
        errors.setLevel(logging.ERROR)
        root.handlers.insert(0, raw)  # in front of the filters, which rewrite records in place
        root.addHandler(errors)
        return LogCapture(stream, raw, errors)

    yield capture
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    for handler, filters in saved_filters.items():
        handler.filters[:] = filters
    root.setLevel(saved_level)
    for name, level in saved_quiet.items():
        logging.getLogger(name).setLevel(level)
    sys.excepthook = saved_hook


@pytest.fixture(autouse=True)
def _restore_discord_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Discord adapter points discord.py's class attributes at the fake; put them back afterwards."""
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", DiscordWebSocket.DEFAULT_GATEWAY)


# ---------------------------------------------------------------------------------------------- database


def read_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def dump_db(path: Path, skip: Iterable[str] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (sorted), for before/after comparisons and secret scans."""
    with read_db(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {
            t: sorted((tuple(row) for row in conn.execute(f'SELECT * FROM "{t}"')), key=repr)  # noqa: S608
            for t in tables
            if t not in skip
        }


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@dataclass
class Ledger:
    """What the database says happened to every round, with the invariants of platform-limits §4 checked."""

    statuses: Counter[str]
    reasons: Counter[str]
    rounds: int
    reserves: int
    refunds: int
    charged: int  # rounds with a reserve and no refund
    delivered: int
    grants: int
    idem_keys: set[str]
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds, "reserves": self.reserves, "refunds": self.refunds, "charged": self.charged,
            "delivered": self.delivered, "grants": self.grants, "statuses": dict(self.statuses),
            "reasons": dict(self.reasons),
        }


def ledger(path: Path, default_daily: int | None = None) -> Ledger:
    with read_db(path) as conn:
        rows = conn.execute("SELECT id, idem_key, status, reason, platform, community, user_id, day FROM rounds")
        rounds = {r["id"]: r for r in rows}
        entries = conn.execute(
            "SELECT round_id, kind, amount, platform, community, user_id, day FROM ledger"
        ).fetchall()
        policies = {(r["platform"], r["community"], r["user_id"]): r["daily"]
                    for r in conn.execute("SELECT * FROM policies")}
    per_round: dict[int, Counter[str]] = {}
    for entry in entries:
        if entry["round_id"] is not None:
            per_round.setdefault(entry["round_id"], Counter())[entry["kind"]] += 1
    problems = []
    charged = 0
    for round_id, row in rounds.items():
        kinds = per_round.get(round_id, Counter())
        if kinds["reserve"] > 1 or kinds["refund"] > 1:
            problems.append(f"round {round_id}: {dict(kinds)} (charged twice?)")
        if kinds["refund"] and not kinds["reserve"]:
            problems.append(f"round {round_id}: refund without reserve")
        net = kinds["reserve"] - kinds["refund"]
        charged += net
        status = row["status"]
        if status == "delivered" and net != 1:
            problems.append(f"round {round_id}: delivered but net charge {net}")
        if status in ("failed", "cancelled", "refused") and net != 0:
            problems.append(f"round {round_id}: {status} ({row['reason']}) but still charged")
        if status in ("requested", "queued", "running", "delivering"):
            problems.append(f"round {round_id}: still open ({status})")
    orphans = set(per_round) - set(rounds)
    if orphans:
        problems.append(f"ledger rows for unknown rounds {sorted(orphans)[:5]}")
    if default_daily is not None:
        used: Counter[tuple[str, str, str, str]] = Counter()
        granted: Counter[tuple[str, str, str, str]] = Counter()
        for entry in entries:
            key = (entry["platform"], entry["community"], entry["user_id"], entry["day"])
            sign = {"reserve": 1, "refund": -1}.get(entry["kind"], 0)
            used[key] += sign * entry["amount"]
            if entry["kind"] == "grant":
                granted[key] += entry["amount"]
        for key, amount in used.items():
            daily = policies.get(key[:3], policies.get((key[0], key[1], "*"), default_daily))
            if daily is not None and amount > daily + granted[key]:
                problems.append(f"{key}: used {amount} > daily {daily} + granted {granted[key]}")
    statuses = Counter(r["status"] for r in rounds.values())
    return Ledger(
        statuses=statuses,
        reasons=Counter(str(r["reason"]) for r in rounds.values() if r["reason"]),
        rounds=len(rounds),
        reserves=sum(c["reserve"] for c in per_round.values()),
        refunds=sum(c["refund"] for c in per_round.values()),
        charged=charged,
        delivered=statuses["delivered"],
        grants=sum(1 for e in entries if e["kind"] == "grant"),
        idem_keys={r["idem_key"] for r in rounds.values()},
        problems=problems,
    )


# ---------------------------------------------------------------------------------------------- secrets


def outbound_text(calls: Iterable[Call]) -> str:
    """Every parameter a fake recorded (message bodies, captions, keyboards), as one text to scan."""
    parts = []
    for call in calls:
        # `_path`/`_query` are the request URL (webhook routes carry the interaction token there by design).
        body = {k: v for k, v in call.params.items() if not k.startswith("_")}
        parts.append(call.method)
        parts.append(json.dumps(body, default=str, sort_keys=True))
    return "\n".join(parts)


NAMES = {TELEGRAM_TOKEN: "telegram_token", DISCORD_TOKEN: "discord_token", OPENAI_KEY: "openai_key",
         FILE_URL_MARK: "telegram_file_url"}


def secret_hits(text: str, secrets: Iterable[str], label: str = "interaction_token") -> dict[str, int]:
    """Occurrences per kind of secret (known values by name, any other value under `label`)."""
    hits: Counter[str] = Counter()
    for value in secrets:
        if value and value in text:
            hits[NAMES.get(value, label)] += text.count(value)
    return dict(hits)


def scan_for_secrets(
    *, secrets: list[str], logs: LogCapture | None, db: Path | None, fakes: Iterable[FakeServer] = (),
    extra_text: str = "", log_secrets: list[str] | None = None,
) -> dict[str, Any]:
    """Scan redacted logs, outbound bodies and a DB dump. Returns counts per place (all must be zero) plus
    what the redaction filter removed (informational). `log_secrets` narrows the log scan when a known bug
    is covered by its own xfail test."""
    places: dict[str, dict[str, int]] = {}
    if logs is not None:
        places["logs"] = secret_hits(logs.text, secrets if log_secrets is None else log_secrets)
    if db is not None:
        places["database"] = secret_hits(json.dumps(dump_db(db), default=str), secrets)
    for fake in fakes:
        places[type(fake).__name__] = secret_hits(outbound_text(c for c in fake.calls), secrets)
    if extra_text:
        places["extra"] = secret_hits(extra_text, secrets)
    return {
        "hits": {place: hits for place, hits in places.items() if hits},
        "log_bytes": len(logs.text) if logs is not None else 0,
        "raw_records_with_secrets": dict(logs.raw_hits(secrets)) if logs is not None else {},
    }


# ---------------------------------------------------------------------------------------------- waiting


async def wait_until(fake: FakeServer, predicate: Callable[[], bool], timeout: float = 10.0,
                     what: str = "condition") -> None:
    """Re-check `predicate` every time the fake records a call (the fakes' own notification, no polling)."""
    changed = fake._changed  # the FakeServer's notification condition

    async def _wait() -> None:
        async with changed:
            while not predicate():
                if fake.fake_errors:
                    raise AssertionError(fake.fake_errors[0])
                if fake.app_errors:
                    raise AssertionError(f"client error while waiting for {what}: {fake.app_errors!r}")
                await changed.wait()

    try:
        await asyncio.wait_for(_wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


async def settle(tasks: Callable[[], set[asyncio.Task[Any]]], timeout: float = 30.0) -> None:
    """Wait until the task set (rounds, adapter handlers) is empty, new tasks included. On a timeout the
    error names the tasks still running and where each one waits."""

    async def _wait() -> None:
        while running := tasks():
            await asyncio.wait(running)

    try:
        await asyncio.wait_for(_wait(), timeout)
    except TimeoutError:
        stuck = []
        for task in tasks():
            frames = task.get_stack(limit=3)
            where = "; ".join(f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno}" for f in frames)
            stuck.append(f"{task.get_name()} at {where}")
        raise AssertionError(f"tasks still running after {timeout} s: {stuck}") from None


@pytest.fixture
def unpaced_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift the Telegram adapter's own pacing of 20 sends a minute per group (bots.telegram.transport) for
    tests that send dozens of answers into one group and are about something else (authorisation, 429s the
    fake injects, redelivery): paced, they would take minutes. The pacing itself is tests/telegram's subject."""
    from bots.telegram import bot as telegram_bot
    from bots.telegram.transport import rate_limiter

    monkeypatch.setattr(telegram_bot, "rate_limiter", lambda **kw: rate_limiter(group_per_period=10_000, **kw))
