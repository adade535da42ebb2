"""Helpers for the workers tests: a provider fake that records concurrency (overall and per user), starting
and stopping `easel run` processes, and reading the outcome from PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web

from tests.fakes.fake_openai import FakeOpenAI
from tests.fakes.fake_telegram import FakeTelegram
from tests.reliability.conftest import OPENAI_KEY, REPO, TELEGRAM_TOKEN

OPEN = ("requested", "queued", "running", "delivering")


class CountingOpenAI(FakeOpenAI):
    """Each image call takes `delay` seconds; records the peak of calls in flight, overall and per user (the
    request's safety_identifier), and can park calls (`hold_all`) so that rounds are in flight on demand."""

    def __init__(self, delay: float = 0.05) -> None:
        super().__init__(image_side=16, report_usage=True)
        self.delay = delay
        self.users: Counter[str] = Counter()
        self.user_peak: Counter[str] = Counter()
        self.parked = asyncio.Event()
        self.parked.set()
        self.arrivals = 0
        self.peak = 0  # calls in flight at once, over the whole call (the base class counts only its body)

    async def _handle(self, request: web.Request, endpoint: str, body: Any) -> web.StreamResponse:
        user = ""
        if request.content_type == "application/json":
            user = str((await request.json()).get("safety_identifier", ""))
        self.users[user] += 1
        self.user_peak[user] = max(self.user_peak[user], self.users[user])
        self.peak = max(self.peak, self.in_flight_now)
        self.arrivals += 1
        self._notify()
        try:
            await self.parked.wait()
            await asyncio.sleep(self.delay)
            return await super()._handle(request, endpoint, body)
        finally:
            self.users[user] -= 1

    @property
    def in_flight_now(self) -> int:
        return sum(self.users.values())


def worker_env(name: str, data: Path, pg_url: str, tg: FakeTelegram, oai: FakeOpenAI, cap: int) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {
        **keep, "PYTHONPATH": str(REPO), "TELEGRAM_TOKEN": TELEGRAM_TOKEN, "EASEL_TELEGRAM_API_URL": tg.root,
        "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": f"{oai.origin}/v1", "EASEL_DATA_DIR": str(data / name),
        "EASEL_DATABASE_URL": pg_url, "EASEL_WORKER_ID": name,
        "EASEL_PROVIDER_CONCURRENCY": str(cap), "EASEL_USER_CONCURRENCY": "2", "EASEL_USER_RATE": "10000",
        "EASEL_DAILY_CREDITS": "100000", "EASEL_QUEUE_LIMIT": "10000",
        "EASEL_PARTIAL_IMAGES": "0", "EASEL_PROVIDER_TIMEOUT": "120", "EASEL_SHUTDOWN_GRACE": "2",
        "EASEL_BACKGROUND_MODE": "off", "EASEL_LOG_LEVEL": "INFO",
    }


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots.process.cli", "run", env=env, cwd=REPO, stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=out,
        )


@dataclass
class Outcome:
    by_state: Counter[str]
    idem_keys: set[str]
    delivered_cost: int
    charged: int
    reserves_per_round: int
    refunds_per_round: int
    open_rounds: int
    owners: Counter[str]


def outcome(pg_url: str) -> Outcome:
    with psycopg.connect(pg_url) as conn:
        states = Counter({str(s): int(n) for s, n in conn.execute(
            "SELECT status, count(*) FROM rounds GROUP BY status").fetchall()})
        keys = {str(k) for (k,) in conn.execute("SELECT idem_key FROM rounds").fetchall()}
        row = conn.execute("SELECT coalesce(sum(cost), 0) FROM rounds WHERE status = 'delivered'").fetchone()
        delivered_cost = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT coalesce(sum(CASE kind WHEN 'reserve' THEN amount ELSE -amount END), 0) FROM ledger "
            "WHERE kind IN ('reserve', 'refund')").fetchone()
        charged = int(row[0]) if row else 0
        row = conn.execute("SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM ledger "
                           "WHERE kind = 'reserve' GROUP BY round_id) r").fetchone()
        reserves = int(row[0]) if row else 0
        row = conn.execute("SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM ledger "
                           "WHERE kind = 'refund' GROUP BY round_id) r").fetchone()
        refunds = int(row[0]) if row else 0
        owners = Counter({str(o): int(n) for o, n in conn.execute(
            "SELECT coalesce(owner, ''), count(*) FROM rounds GROUP BY owner").fetchall()})
    return Outcome(states, keys, delivered_cost, charged, reserves, refunds,
                   sum(states[s] for s in OPEN), owners)


async def stop(procs: list[asyncio.subprocess.Process]) -> list[int]:
    codes = []
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
    for proc in procs:
        try:
            codes.append(await asyncio.wait_for(proc.wait(), 20))
        except TimeoutError:
            proc.kill()
            codes.append(await proc.wait())
    return codes
