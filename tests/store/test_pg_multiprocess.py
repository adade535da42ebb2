"""The ledger's guarantees with several processes writing to one PostgreSQL at once: each worker process
(`_pg_ledger_worker.py`) reserves, delivers, fails and cancels concurrently, cancelling other processes' rounds
too. Afterwards: each round was charged at most once and refunded at most once, a delivered or open round
keeps its charge, a refunded one nets zero, and nobody spent beyond the allowance."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

from core.events import ChannelKey, Platform
from core.records import Round, RoundState
from core.store.postgres import PostgresStore
from tests.store._pg_ledger_worker import DAILY
from tests.store.support import TODAY

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
ROUNDS = 30
SPENT = {RoundState.QUEUED, RoundState.RUNNING, RoundState.DELIVERING, RoundState.DELIVERED}


async def test_several_processes_share_one_ledger(pg_url: str) -> None:
    community = "-777"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.store._pg_ledger_worker",
            pg_url,
            community,
            str(worker),
            str(ROUNDS),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for worker in range(WORKERS)
    ]
    outputs = await asyncio.gather(*(proc.communicate() for proc in procs))
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-3000:]
    reserved: Counter[int] = Counter()
    reserves: Counter[int] = Counter()
    refunded: Counter[int] = Counter()
    refunds: Counter[int] = Counter()
    for out, _ in outputs:
        for line in out.decode().splitlines():
            event = json.loads(line)
            if "reserved" in event:
                reserved[event["round"]] += event["reserved"]
                reserves[event["round"]] += 1
            else:
                refunded[event["round"]] += event["refunded"]
                refunds[event["round"]] += 1
    assert reserves and max(reserves.values()) == 1
    assert not refunds or max(refunds.values()) == 1

    async with PostgresStore(pg_url) as store:
        rounds = await _all_rounds(store, community)
        assert len(rounds) == WORKERS * ROUNDS
        per_user: Counter[str] = Counter()
        for item in rounds:
            net = reserved[item.id] - refunded[item.id]
            assert net == (item.cost if item.state in SPENT else 0), (item.id, item.state, net)
            if item.state is RoundState.DELIVERED:
                assert refunded[item.id] == 0
            per_user[item.user_id] += net
        for user, spent in per_user.items():
            balance = await store.balance(Platform.TELEGRAM, community, user, TODAY, DAILY)
            assert balance.used == spent
            assert 0 <= spent <= DAILY


async def _all_rounds(store: PostgresStore, community: str) -> list[Round]:
    key = ChannelKey(Platform.TELEGRAM, community, community)
    found: list[Round] = []
    number = 1
    while (item := await store.round_by_number(key, number)) is not None:
        found.append(item)
        number += 1
    return found
