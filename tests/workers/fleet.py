"""Helpers for the workers tests: a provider fake that records concurrency (overall and per user), starting
and stopping `easel run` processes (pointed at the fake Telegram and, per shard, the fake Discord), waiting
for quiescence, and reading the outcome from PostgreSQL and from the fakes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web

from tests.fakes._base import FakeServer
from tests.fakes.fake_discord import FakeDiscord, FakeGuild
from tests.fakes.fake_openai import FakeOpenAI
from tests.fakes.fake_telegram import FakeTelegram
from tests.reliability.conftest import OPENAI_KEY, REPO, TELEGRAM_TOKEN, wait_until

OPEN = ("requested", "queued", "running", "delivering")


class CountingOpenAI(FakeOpenAI):
    """Each image call takes `delay` seconds; records the peak of calls in flight, overall and per user (the
    request's safety_identifier), and can park calls (`parked`) so that rounds are in flight on demand.
    `asked` keeps (safety_identifier, request body) of every call, to tell whose call was whose by prompt."""

    def __init__(self, delay: float = 0.05) -> None:
        super().__init__(image_side=16, report_usage=True)
        self.delay = delay
        self.users: Counter[str] = Counter()
        self.user_peak: Counter[str] = Counter()
        self.parked = asyncio.Event()
        self.parked.set()
        self.arrivals = 0
        self.peak = 0  # calls in flight at once, over the whole call (the base class counts only its body)
        self.asked: list[tuple[str, str]] = []

    async def _handle(self, request: web.Request, endpoint: str, body: Any) -> web.StreamResponse:
        user = ""
        if request.content_type == "application/json":
            user = str((await request.json()).get("safety_identifier", ""))
            self.asked.append((user, await request.text()))
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
        **keep,
        "PYTHONPATH": str(REPO),
        "TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "EASEL_TELEGRAM_API_URL": tg.root,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": f"{oai.origin}/v1",
        "EASEL_DATA_DIR": str(data / name),
        "EASEL_DATABASE_URL": pg_url,
        "EASEL_WORKER_ID": name,
        "EASEL_PROVIDER_CONCURRENCY": str(cap),
        "EASEL_USER_CONCURRENCY": "2",
        "EASEL_USER_RATE": "10000",
        "EASEL_DAILY_CREDITS": "100000",
        "EASEL_QUEUE_LIMIT": "10000",
        "EASEL_PARTIAL_IMAGES": "0",
        "EASEL_PROVIDER_TIMEOUT": "120",
        "EASEL_SHUTDOWN_GRACE": "2",
        "EASEL_BACKGROUND_MODE": "off",
        "EASEL_LOG_LEVEL": "INFO",
    }


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.process.cli",
            "run",
            env=env,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
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
        states = Counter(
            {str(s): int(n) for s, n in conn.execute("SELECT status, count(*) FROM rounds GROUP BY status").fetchall()}
        )
        keys = {str(k) for (k,) in conn.execute("SELECT idem_key FROM rounds").fetchall()}
        row = conn.execute("SELECT coalesce(sum(cost), 0) FROM rounds WHERE status = 'delivered'").fetchone()
        delivered_cost = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT coalesce(sum(CASE kind WHEN 'reserve' THEN amount ELSE -amount END), 0) FROM ledger "
            "WHERE kind IN ('reserve', 'refund')"
        ).fetchone()
        charged = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM ledger "
            "WHERE kind = 'reserve' GROUP BY round_id) r"
        ).fetchone()
        reserves = int(row[0]) if row else 0
        row = conn.execute(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM ledger "
            "WHERE kind = 'refund' GROUP BY round_id) r"
        ).fetchone()
        refunds = int(row[0]) if row else 0
        owners = Counter(
            {
                str(o): int(n)
                for o, n in conn.execute("SELECT coalesce(owner, ''), count(*) FROM rounds GROUP BY owner").fetchall()
            }
        )
    return Outcome(states, keys, delivered_cost, charged, reserves, refunds, sum(states[s] for s in OPEN), owners)


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


def discord_env(fake: FakeDiscord, shards: str) -> dict[str, str]:
    """What points a worker at the fake Discord, running the shards `shards` (`EASEL_DISCORD_SHARDS`, `0/2`)."""
    return {
        "DISCORD_TOKEN": fake.token,
        "EASEL_DISCORD_API_URL": fake.api_url,
        "EASEL_DISCORD_GATEWAY_URL": fake.gateway_url,
        "EASEL_DISCORD_SHARDS": shards,
    }


async def guild_on_shard(fake: FakeDiscord, shard: int, count: int, name: str) -> FakeGuild:
    """A guild whose id routes to `shard` of `count` (Discord: (id >> 22) % count). Made before the workers
    connect: a guild made while connected is announced to them, and the misses here must not be."""
    assert not fake.connected, "make the guilds before the workers connect"
    while True:
        guild = await fake.guild(name)
        if fake.shard_for(guild.id, count) == shard:
            return guild
        del fake.guilds[guild.id]
        for channel in guild.channels:
            del fake.channels[channel.id]


async def ticking(
    fake: FakeServer,
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    state: Callable[[], object] | None = None,
) -> None:
    """`wait_until` on `fake`, re-checked on a tick too: the workers commit to the database (and talk to the
    other fakes) without telling this one. On a timeout the error adds `state()`, what was still missing."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.1)
            fake._notify()

    ticker = asyncio.create_task(tick())
    try:
        await wait_until(fake, predicate, timeout=timeout, what=what)
    except AssertionError as error:
        if state is None:
            raise
        raise AssertionError(f"{error}; {state()}") from None
    finally:
        ticker.cancel()


def worker_log(folder: Path, name: str) -> str:
    path = folder / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass(frozen=True)
class RoundRow:
    status: str
    reason: str | None
    owner: str


def round_states(pg_url: str) -> dict[str, RoundRow]:
    """Every round by its idempotency key (`tg:<chat>:<message>`, `dc:i:<interaction>`)."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT idem_key, status, reason, coalesce(owner, '') FROM rounds").fetchall()
    return {str(k): RoundRow(str(s), None if r is None else str(r), str(o)) for k, s, r, o in rows}


def telegram_answers(tg: FakeTelegram) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """The bot's messages still in each chat, by the (chat id, message id) they reply to."""
    found: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for (chat, message_id), origin in tg.reply_origin.items():
        message = tg.messages.get((chat, message_id))
        if message is not None:
            found.setdefault((chat, origin), []).append(message)
    return found


def telegram_kind(message: dict[str, Any]) -> str:
    """`image` (a photo or a file) or `text` (a refusal, or progress while the round runs)."""
    return "image" if "photo" in message or "document" in message else "text" if message.get("text") else "other"


def discord_kind(message: dict[str, Any]) -> str:
    """`image` (an image attached) or `text` (a refusal, or progress while the round runs)."""
    if any(str(a.get("content_type", "")).startswith("image/") for a in message.get("attachments") or []):
        return "image"
    return "text" if message.get("content") else "other"
