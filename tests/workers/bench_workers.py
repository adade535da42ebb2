"""Figures for docs/scaling-out.md (printed, never asserted): rounds per second and CPU per round with 1, 2 and
3 `easel run` workers on PostgreSQL and with one on SQLite, against a fake OpenAI that answers after `DELAY`
seconds and either the fake Telegram (private chats: the fleet shares Telegram's 30 messages a second) or the
fake Discord (each worker runs one gateway shard of as many as there are workers, one guild per shard);
and ledger reserve+commit pairs per second on PostgreSQL through the store.

    python -m tests.workers.bench_workers [ROUNDS]

Needs the PostgreSQL binaries (a throwaway cluster is started, as in the tests)."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore
from tests.bench.bench_ledger import _pairs, _settings, machine
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_telegram import FakeTelegram
from tests.reliability.conftest import DISCORD_TOKEN, TELEGRAM_TOKEN
from tests.store.pg_cluster import running_cluster
from tests.workers.fleet import (
    CountingOpenAI,
    discord_env,
    discord_kind,
    guild_on_shard,
    outcome,
    start_worker,
    stop,
    ticking,
    worker_env,
)

DELAY = 0.05
CAP = 16
USERS = 100


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run(workers: int, pg_url: str | None, rounds: int, tmp: Path) -> dict[str, Any]:
    async with CountingOpenAI(delay=DELAY) as oai, FakeTelegram(token=TELEGRAM_TOKEN) as tg:
        names = [f"w{i}" for i in range(workers)]
        envs = [worker_env(n, tmp, pg_url or "", tg, oai, CAP) for n in names]
        for env in envs:
            env["EASEL_USER_CONCURRENCY"] = "100"
            if pg_url is None:
                del env["EASEL_DATABASE_URL"]
        procs = [await start_worker(env, tmp / f"{n}.log") for n, env in zip(names, envs, strict=True)]
        try:
            await tg.wait_for("getUpdates", timeout=60)
            await asyncio.sleep(2)  # every worker up (a leader elected)
            cpu0 = sum(_cpu(p.pid) for p in procs)
            people = [tg.user(f"B{i}", f"b{i}") for i in range(USERS)]
            chats = [tg.private_chat(p) for p in people]
            started = time.monotonic()
            for n in range(rounds):
                await tg.send_message(chats[n % USERS], people[n % USERS], f"/imagine bench {n}")
            while True:
                shown = sum(len(tg.calls_to(m)) for m in ("sendPhoto", "editMessageMedia", "sendDocument"))
                if shown >= rounds:
                    break
                await asyncio.sleep(0.05)
            seconds = time.monotonic() - started
            cpu = sum(_cpu(p.pid) for p in procs) - cpu0
        finally:
            await stop(procs)
    return _row("telegram", workers, pg_url, rounds, seconds, cpu, oai)


async def _run_discord(workers: int, pg_url: str | None, rounds: int, tmp: Path) -> dict[str, Any]:
    async with CountingOpenAI(delay=DELAY) as oai, FakeTelegram(token=TELEGRAM_TOKEN) as tg, FakeDiscord(
        token=DISCORD_TOKEN
    ) as dc:
        guilds = [await guild_on_shard(dc, shard, workers, f"shard {shard}") for shard in range(workers)]
        members = [dc.member(guilds[i % workers], f"d{i}") for i in range(USERS)]
        names = [f"w{i}" for i in range(workers)]
        envs = []
        for index, name in enumerate(names):
            env = worker_env(name, tmp, pg_url or "", tg, oai, CAP) | discord_env(dc, f"{index}/{workers}")
            del env["TELEGRAM_TOKEN"]  # Discord alone
            env["EASEL_USER_CONCURRENCY"] = "100"
            if pg_url is None:
                del env["EASEL_DATABASE_URL"]
            envs.append(env)
        procs = [await start_worker(env, tmp / f"{n}.log") for n, env in zip(names, envs, strict=True)]
        try:
            await ticking(dc, lambda: len(dc.shards_connected()) == workers and bool(dc.commands), 60,
                          "every shard connected and the commands registered")
            cpu0 = sum(_cpu(p.pid) for p in procs)
            started = time.monotonic()
            asked = [
                await dc.slash_command(guilds[n % USERS % workers].channel, members[n % USERS].user, "imagine",
                                       {"prompt": f"bench {n}"})
                for n in range(rounds)
            ]

            def shown() -> int:
                return sum(1 for found in asked if any(discord_kind(m) == "image" for m in dc.replies(found)))

            await ticking(dc, lambda: shown() >= rounds, 300, "every image shown")
            seconds = time.monotonic() - started
            cpu = sum(_cpu(p.pid) for p in procs) - cpu0
        finally:
            await stop(procs)
    return _row("discord", workers, pg_url, rounds, seconds, cpu, oai)


def _row(
    platform: str, workers: int, pg_url: str | None, rounds: int, seconds: float, cpu: float, oai: CountingOpenAI
) -> dict[str, Any]:
    if pg_url is not None:
        assert outcome(pg_url).by_state["delivered"] == rounds
    return {
        "platform": platform,
        "backend": "postgresql" if pg_url else "sqlite",
        "workers": workers,
        "rounds": rounds,
        "seconds": round(seconds, 2),
        "rounds_per_s": round(rounds / seconds, 1),
        "cpu_ms_per_round": round(cpu / rounds * 1000, 2),
        "provider_peak": oai.peak,
    }


async def _ledger(pg_url: str, tmp: Path) -> list[dict[str, Any]]:
    settings = _settings(tmp / "ledger")
    rows = []
    async with PostgresStore(pg_url) as store:
        for tasks in (1, 8):
            rows.append(await _pairs(cast(SqliteStore, store), settings, f"pg{tasks}", 2000, tasks))
    return rows


async def main(rounds: int) -> None:
    print(machine())
    with running_cluster() as cluster, tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        runs = [(1, False), (1, True), (2, True), (3, True)]
        for n, (run_one, (workers, pg)) in enumerate(
            (run_one, shape) for run_one in (_run, _run_discord) for shape in runs
        ):
            run = tmp / f"run{n}"
            run.mkdir()
            url = cluster.create_database(f"bench_{n}") if pg else None
            print(await run_one(workers, url, rounds, run), flush=True)
        for row in await _ledger(cluster.create_database("bench_ledger"), tmp):
            print({"ledger_postgresql": row}, flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
