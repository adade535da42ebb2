"""psycopg 3 (+ psycopg_pool) against asyncpg on Easel's PostgreSQL shapes, on a throwaway cluster.

Not a test: it prints figures and writes JSON, and asserts nothing about time. Issue 14 asks for "a well-kept async
driver (psycopg 3 with its pool, or asyncpg: choose by measurement)"; this is the measurement. Easel uses psycopg;
asyncpg is not a dependency: install it by hand (`pip install asyncpg`) to measure it, otherwise its half is skipped.

A throwaway cluster is started with `tests/store/pg_cluster.py` (fsync off, like the tests), a small ledger-like
schema created, and each driver gets its own pool of 8 connections, opened the way Easel opens its own (psycopg:
autocommit, dict rows; asyncpg: defaults, so its statement cache prepares every statement; psycopg prepares a
statement after 5 executions, its default). The default asyncio loop is used, as Easel does (no uvloop).

Workloads, each measured sequentially (1 task) and with 8 concurrent tasks:

- reserve (N=2,000): the shape of Easel's reserve transaction: BEGIN; SELECT ... FOR UPDATE on a round; SELECT SUM
  over the ledger rows of a user and day; INSERT a ledger row; UPDATE the round; COMMIT. Each op has its own round
  (no lock waits), spread over 100 users; the tables are reset before each measurement so both drivers sum the
  same number of rows.
- read (N=5,000): one round by primary key.

Per measurement: ops/s, p50/p99 latency of one op (pool acquire to release), and this process's CPU time per op
(`time.process_time`: the client's cost, the server runs in its own processes). 200 unmeasured ops warm each pool
first. Each figure is the median of 3 runs; the drivers alternate which goes first in a run.

    python -m tests.bench.bench_pg_drivers [--reserve 2000] [--reads 5000] [--runs 3]
        [--out bench-results/pg_drivers.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tests.store.pg_cluster import Cluster, find_bin_dir, running_cluster

try:
    import asyncpg
except ImportError:  # not a dependency of Easel: only measured where installed by hand
    asyncpg = None

POOL = 8
TASKS = (1, 8)
USERS = 100
SEED_TODAY = 20  # ledger rows per user today before a run: what each SUM reads, growing by N/USERS during it
SEED_DAYS = 30  # older days, one row each, so the index has to pick the day
WARMUP = 200
DAY = "2025-06-01"
DEFAULT_OUT = Path("bench-results/pg_drivers.json")

SCHEMA = """
CREATE TABLE rounds (
    id BIGINT PRIMARY KEY,
    platform TEXT NOT NULL,
    community TEXT NOT NULL,
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    status TEXT NOT NULL,
    cost INTEGER NOT NULL DEFAULT 0,
    prompt TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE ledger (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform TEXT NOT NULL,
    community TEXT NOT NULL,
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    round_id BIGINT REFERENCES rounds(id),
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ledger_user_day ON ledger (platform, community, user_id, day);
"""

# The same statements for both drivers; only the placeholder style differs.
LOCK = "SELECT * FROM rounds WHERE id = {0} FOR UPDATE"
BALANCE = (
    "SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount WHEN 'refund' THEN -amount END), 0) AS used,"
    " COALESCE(SUM(amount) FILTER (WHERE kind = 'grant'), 0) AS granted "
    "FROM ledger WHERE platform = {0} AND community = {1} AND user_id = {2} AND day = {3}"
)
INSERT = (
    "INSERT INTO ledger (platform, community, user_id, day, kind, amount, round_id, created_at) "
    "VALUES ({0}, {1}, {2}, {3}, 'reserve', {4}, {5}, {6})"
)
UPDATE = "UPDATE rounds SET status = {0}, cost = {1}, updated_at = {2} WHERE id = {3}"
READ = "SELECT * FROM rounds WHERE id = {0}"


def _pyformat(template: str) -> str:
    return template.format(*["%s"] * 8)


def _numbered(template: str) -> str:
    return template.format(*[f"${n}" for n in range(1, 9)])


def _op_args(i: int, rounds: int) -> tuple[int, str]:
    return i % rounds + 1, f"u{i % USERS}"


# -- the two drivers -----------------------------------------------------------------------------------------


class Psycopg:
    name = "psycopg"

    def __init__(self, url: str) -> None:
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=POOL, max_size=POOL, open=False,
            kwargs={"autocommit": True, "row_factory": dict_row}, name="bench-psycopg",
        )
        self.lock, self.balance, self.insert = _pyformat(LOCK), _pyformat(BALANCE), _pyformat(INSERT)
        self.update, self.read_sql = _pyformat(UPDATE), _pyformat(READ)

    @staticmethod
    def version() -> str:
        return f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version()}), " \
               f"psycopg_pool {_dist_version('psycopg-pool')}"

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    async def reserve(self, round_id: int, user: str, now: datetime) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(self.lock, (round_id,))
            row = await cursor.fetchone()
            assert row is not None
            cursor = await conn.execute(self.balance, ("console", "bench", user, DAY))
            await cursor.fetchone()
            await conn.execute(self.insert, ("console", "bench", user, DAY, 1, round_id, now))
            await conn.execute(self.update, ("queued", 1, now, round_id))

    async def read(self, round_id: int) -> None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(self.read_sql, (round_id,))
            row = await cursor.fetchone()
            assert row is not None


class Asyncpg:
    name = "asyncpg"

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: Any = None
        self.lock, self.balance, self.insert = _numbered(LOCK), _numbered(BALANCE), _numbered(INSERT)
        self.update, self.read_sql = _numbered(UPDATE), _numbered(READ)

    @staticmethod
    def version() -> str:
        return f"asyncpg {asyncpg.__version__}" if asyncpg is not None else "asyncpg not installed"

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.url, min_size=POOL, max_size=POOL)

    async def close(self) -> None:
        await self.pool.close()

    async def reserve(self, round_id: int, user: str, now: datetime) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(self.lock, round_id)
            assert row is not None
            await conn.fetchrow(self.balance, "console", "bench", user, DAY)
            await conn.execute(self.insert, "console", "bench", user, DAY, 1, round_id, now)
            await conn.execute(self.update, "queued", 1, now, round_id)

    async def read(self, round_id: int) -> None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(self.read_sql, round_id)
            assert row is not None


Driver = Psycopg | Asyncpg


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


# -- the database ----------------------------------------------------------------------------------------------


def create_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)


def reset(url: str, rounds: int) -> None:
    """The same starting point for every measurement: `rounds` queued-to-be rounds, a seeded ledger."""
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE ledger, rounds RESTART IDENTITY")
        conn.execute(
            "INSERT INTO rounds (id, platform, community, user_id, day, status, prompt, created_at, updated_at) "
            "SELECT g, 'console', 'bench', 'u' || ((g - 1) %% %s), %s, 'claimed', 'a lighthouse at dusk #' || g, "
            "%s, %s FROM generate_series(1, %s) g",
            (USERS, DAY, now, now, rounds),
        )
        conn.execute(
            "INSERT INTO ledger (platform, community, user_id, day, kind, amount, created_at) "
            "SELECT 'console', 'bench', 'u' || u, %s, CASE WHEN n %% 10 = 0 THEN 'refund' ELSE 'reserve' END, 1, %s "
            "FROM generate_series(0, %s) u, generate_series(1, %s) n",
            (DAY, now, USERS - 1, SEED_TODAY),
        )
        conn.execute(
            "INSERT INTO ledger (platform, community, user_id, day, kind, amount, created_at) "
            "SELECT 'console', 'bench', 'u' || u, to_char(DATE '2025-04-01' + d, 'YYYY-MM-DD'), 'reserve', 1, %s "
            "FROM generate_series(0, %s) u, generate_series(0, %s) d",
            (now, USERS - 1, SEED_DAYS - 1),
        )
        conn.execute("VACUUM ANALYZE rounds")
        conn.execute("VACUUM ANALYZE ledger")


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"


# -- measuring ---------------------------------------------------------------------------------------------------


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def measure(op: Callable[[int], Awaitable[None]], n: int, tasks: int) -> dict[str, float]:
    """Run op(0..n-1) from `tasks` concurrent tasks; ops/s, latency percentiles (ms), client CPU ms per op."""
    latencies: list[float] = []
    next_op = iter(range(n))

    async def worker() -> None:
        for i in next_op:  # shared iterator: each op runs once, whichever task is free takes the next
            started = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    latencies.sort()
    return {
        "ops_s": n / wall,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "cpu_ms_per_op": cpu * 1000 / n,
    }


async def run_driver(driver: Driver, url: str, reserve_n: int, reads_n: int) -> dict[str, dict[str, float]]:
    rounds = reserve_n + WARMUP
    results: dict[str, dict[str, float]] = {}
    await driver.open()
    try:
        for tasks in TASKS:
            await asyncio.to_thread(reset, url, rounds)
            now = datetime.now(UTC)

            async def reserve(i: int, offset: int = 0) -> None:
                round_id, user = _op_args(i + offset, rounds)
                await driver.reserve(round_id, user, now)

            await measure(lambda i: reserve(i, reserve_n), WARMUP, tasks)  # rounds past the measured ones
            results[f"reserve x{tasks}"] = await measure(reserve, reserve_n, tasks)
        for tasks in TASKS:
            await measure(lambda i: driver.read(_op_args(i, rounds)[0]), WARMUP, tasks)
            results[f"read x{tasks}"] = await measure(lambda i: driver.read(_op_args(i, rounds)[0]), reads_n, tasks)
    finally:
        await driver.close()
    return results


def machine(pg: str) -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "postgresql": pg,
        "platform": platform.platform(),
        "drivers": [Psycopg.version(), Asyncpg.version()],
    }


def _median(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        workload: {metric: statistics.median(run[workload][metric] for run in runs) for metric in runs[0][workload]}
        for workload in runs[0]
    }


def print_table(info: dict[str, Any], medians: dict[str, dict[str, dict[str, float]]], runs: int) -> None:
    print(f"machine: {info['nproc']} CPUs, {info['cpu_model']}; Python {info['python']}; "
          f"PostgreSQL {info['postgresql']} (same machine, fsync off)")
    print("drivers: " + "; ".join(info["drivers"]))
    print(f"median of {runs} runs; pool of {POOL}; client CPU = this process's CPU time per op\n")
    print(f"{'workload':<13}{'driver':<10}{'ops/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/op':>11}")
    workloads = next(iter(medians.values())).keys()
    for workload in workloads:
        for name, figures in medians.items():
            f = figures[workload]
            print(f"{workload:<13}{name:<10}{f['ops_s']:>9.0f}{f['p50_ms']:>9.2f}{f['p99_ms']:>9.2f}"
                  f"{f['cpu_ms_per_op']:>11.3f}")
    if len(medians) == 2:
        print("\nasyncpg / psycopg ops/s: " + ", ".join(
            f"{w} {medians['asyncpg'][w]['ops_s'] / medians['psycopg'][w]['ops_s']:.2f}x" for w in workloads))


async def main_async(reserve_n: int, reads_n: int, runs: int, out: Path) -> int:
    if find_bin_dir() is None:
        print("PostgreSQL binaries (initdb, pg_ctl) not found: nothing measured", file=sys.stderr)
        return 0
    if asyncpg is None:
        print("asyncpg is not installed (`pip install asyncpg` to compare): measuring psycopg only\n")
    with running_cluster() as cluster:
        url = await asyncio.to_thread(Cluster.create_database, cluster, "bench")
        await asyncio.to_thread(create_schema, url)
        info = machine(await asyncio.to_thread(server_version, url))
        makers: list[Callable[[], Driver]] = [lambda: Psycopg(url)]
        if asyncpg is not None:
            makers.append(lambda: Asyncpg(url))
        per_driver: dict[str, list[dict[str, dict[str, float]]]] = {}
        for run in range(runs):
            order = makers if run % 2 == 0 else makers[::-1]
            for make in order:
                driver = make()
                per_driver.setdefault(driver.name, []).append(await run_driver(driver, url, reserve_n, reads_n))
    ordered = sorted(per_driver.items(), key=lambda kv: kv[0] != "psycopg")  # psycopg first
    medians = {name: _median(results) for name, results in ordered}
    print_table(info, medians, runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "reserve_n": reserve_n, "reads_n": reads_n, "runs": runs,
                               "median": medians, "all_runs": per_driver}, indent=2))
    print(f"  -> {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reserve", type=int, default=2000, help="reserve transactions per measurement")
    parser.add_argument("--reads", type=int, default=5000, help="primary-key reads per measurement")
    parser.add_argument("--runs", type=int, default=3, help="runs; each figure is their median")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args.reserve, args.reads, args.runs, args.out))


if __name__ == "__main__":
    sys.exit(main())
