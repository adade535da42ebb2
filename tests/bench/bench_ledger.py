"""Ledger throughput on the real store: reserve+commit pairs per second.

A pair is what every charged round costs the ledger, through the store port (`SqliteStore`), as
`BEGIN IMMEDIATE ... COMMIT` transactions on the single writer thread (WAL, synchronous=FULL, so each commit
waits for fsync):

1. claim:   record the round (idempotency key);
2. reserve: check the user's balance, append the `reserve` row, the round `queued`;
3. commit:  the round `delivered`.

Measured sequentially (one task awaiting each pair) and with N concurrent tasks (the writer serialises them;
the figure shows what queueing on it costs). A last row runs whole rounds through `RoundService.submit` with a fake
provider that answers at once, for scale. No assertions: it prints a table and writes JSON.

    python -m tests.bench.bench_ledger [--pairs 2000] [--tasks 1,8,64] [--rounds 500] [--out bench-results/ledger.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bots.process.config import Settings, load_settings
from core.events import Actor, ChannelKey, Platform, RoundRequest
from core.records import Facts, NewRound, Reservation, RoundKind
from core.spec import ImageSpec
from core.store.sqlite import SqliteStore

KEY = ChannelKey(Platform.CONSOLE, "bench", "bench-ch")
USERS = 100  # rounds are spread over this many users, so each balance check reads a realistic slice
DEFAULT_OUT = Path("bench-results/ledger.json")


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": cpus,
        "cpu_model": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def _filesystem(path: Path) -> str:
    """The filesystem type holding `path` (fsync cost depends on it), from /proc/mounts when available."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path.resolve()).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def _settings(data_dir: Path) -> Settings:
    return load_settings(
        {
            "OPENAI_API_KEY": "sk-bench-not-a-real-key",
            "EASEL_DATA_DIR": str(data_dir),
            "EASEL_DAILY_CREDITS": "1000000",
            "EASEL_USER_CONCURRENCY": "100",
            "EASEL_PROVIDER_CONCURRENCY": "1000",
            "EASEL_QUEUE_LIMIT": "100000",
        },
        dotenv=None,
    )


async def _pair(store: SqliteStore, settings: Settings, idem: str, user: str, now: datetime) -> float:
    """Claim, reserve and commit one round (three transactions); returns the pair's latency in seconds."""
    started = time.perf_counter()
    new = NewRound(idem_key=idem, key=KEY, user_id=user, user_name="", parent_id=None, kind=RoundKind.GENERATE,
                   prompt="bench", spec=ImageSpec())
    item = await store.create_round(new, now)
    await store.reserve(Reservation(round_id=item.id, cost=1, default_daily=settings.daily_credits, now=now))
    await store.deliver(item.id, KEY, [f"m{item.id}"], Facts(), now)
    return time.perf_counter() - started


def _row(mode: str, tasks: int, count: int, seconds: float, latencies: list[float], txns: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "mode": mode,
        "tasks": tasks,
        "count": count,
        "seconds": round(seconds, 4),
        "per_second": round(count / seconds, 1),
        "txn_per_second": round(count * txns / seconds, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
    }


async def _pairs(store: SqliteStore, settings: Settings, run: str, pairs: int, tasks: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    latencies: list[float] = []
    counter = iter(range(pairs))

    async def worker() -> None:
        for i in counter:  # shared iterator: the tasks split the pairs between them
            latencies.append(await _pair(store, settings, f"bench:{run}:{i}", str(i % USERS), now))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return _row("sequential" if tasks == 1 else "concurrent", tasks, pairs, time.perf_counter() - started, latencies, 3)


async def _whole_rounds(settings: Settings, count: int, tasks: int) -> dict[str, Any]:
    from bots.process.app import open_core
    from tests.fakes.fake_provider import FakeProvider
    from tests.fakes.recording_view import RecordingView

    latencies: list[float] = []
    counter = iter(range(count))
    async with open_core(settings, provider=FakeProvider()) as core:

        async def worker() -> None:
            for i in counter:
                actor = Actor(Platform.CONSOLE, f"s{i % USERS}", "bench")
                view = RecordingView()
                started = time.perf_counter()
                await core.rounds.submit(RoundRequest(KEY, actor, "bench", f"round:{tasks}:{i}"), view)
                latencies.append(time.perf_counter() - started)
                if view.result is None:
                    raise RuntimeError(f"round {i} was not delivered: {view.refusal}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        elapsed = time.perf_counter() - started
    # A whole round is 5 write transactions: claim, reserve (queued), running, delivering, delivered.
    return _row("whole round", tasks, count, elapsed, latencies, 5)


async def measure(data_dir: Path, pairs: int, tasks: Sequence[int], whole_rounds: int) -> dict[str, Any]:
    settings = _settings(data_dir)
    results = []
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with SqliteStore(settings.db_path) as store:
        # The writer connection's own pragmas (synchronous is per connection): read on the writer thread.
        journal, sync = await store._db.on_writer(
            lambda c: (c.execute("PRAGMA journal_mode").fetchone()[0], c.execute("PRAGMA synchronous").fetchone()[0])
        )
        pragmas = {"journal_mode": journal, "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[sync]}
        await _pairs(store, settings, "warmup", min(pairs, 100), 1)
        for n in tasks:
            results.append(await _pairs(store, settings, f"t{n}", pairs, n))
    if whole_rounds:
        results.append(await _whole_rounds(settings, whole_rounds, 1))
        results.append(await _whole_rounds(settings, whole_rounds, max(tasks)))
    return {
        "benchmark": "ledger reserve+commit",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "store": {**pragmas, "filesystem": _filesystem(data_dir), "writer_threads": 1},
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["store"]
    lines = [
        f"Ledger throughput — {m['nproc']} CPU ({m['cpu_model']}), Python {m['python']}, SQLite {m['sqlite']}, "
        f"journal={s['journal_mode']} synchronous={s['synchronous']} on {s['filesystem']}",
        f"{'mode':<13} {'tasks':>5} {'count':>6} {'seconds':>8} {'per s':>9} {'txn/s':>9} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for r in report["results"]:
        lines.append(
            f"{r['mode']:<13} {r['tasks']:>5} {r['count']:>6} {r['seconds']:>8.3f} {r['per_second']:>9.1f} "
            f"{r['txn_per_second']:>9.1f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}"
        )
    lines.append("per s = reserve+commit pairs per second (whole round: rounds per second)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=2000, help="reserve+commit pairs per row")
    parser.add_argument("--tasks", default="1,8,64", help="comma-separated concurrent task counts")
    parser.add_argument("--rounds", type=int, default=500, help="whole rounds per row (0: skip)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON report")
    parser.add_argument("--data-dir", type=Path, default=None, help="database folder (default: a temp dir)")
    args = parser.parse_args(argv)
    tasks = [int(n) for n in args.tasks.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="easel-bench-") as tmp:
        report = asyncio.run(measure(args.data_dir or Path(tmp), args.pairs, tasks, args.rounds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"written to {args.out}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
