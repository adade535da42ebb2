"""The per-user cap over the fleet (`core.shared_caps.SharedCap`) on a real PostgreSQL: one user's rounds are
counted over every worker (a Discord user whose guilds sit on shards of different workers), checked under a
per-user lock so simultaneous entries cannot both pass, released at `leave`, and a dead worker's holds stop
counting while a live worker's are kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest

from core.guards import LocalCap
from core.ports import UserCap
from core.shared_caps import SharedCap
from core.store.postgres import PostgresStore

ANN = ("discord", "111")
BOB = ("discord", "222")


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(PostgresStore(pg_url, max_size=8)) for _ in range(3)]


async def _workers(stores: list[PostgresStore], limit: int) -> list[SharedCap]:
    caps = []
    for index, store in enumerate(stores):
        await store.heartbeat(f"w{index}", now())
        cap = SharedCap(store, f"w{index}", limit, now)
        await cap.start()
        caps.append(cap)
    return caps


def test_both_caps_are_user_caps() -> None:
    caps: list[UserCap] = [LocalCap(2)]
    assert caps


async def test_simultaneous_entries_on_every_worker_stop_at_the_cap(stores: list[PostgresStore]) -> None:
    caps = await _workers(stores, limit=2)
    entered = await asyncio.gather(*(caps[i % 3].enter(ANN) for i in range(12)), caps[0].enter(BOB))
    assert sum(entered[:12]) == 2  # twelve at once over three workers: exactly the cap got in
    assert entered[12]  # another user is not held by Ann's rounds
    refused = next(i for i, ok in enumerate(entered[:12]) if not ok)
    assert caps[refused % 3].active(ANN) == 2  # the refusal can say how many are in progress


async def test_leave_gives_the_place_back_fleet_wide(stores: list[PostgresStore]) -> None:
    caps = await _workers(stores, limit=1)
    assert await caps[0].enter(ANN)
    assert not await caps[1].enter(ANN)
    caps[0].leave(ANN)
    await caps[0].close()  # the release is written in the background
    assert await caps[1].enter(ANN)
    with pytest.raises(RuntimeError):
        caps[2].leave(ANN)  # never entered there


async def test_a_dead_workers_holds_stop_counting_a_live_workers_are_kept(stores: list[PostgresStore]) -> None:
    caps = await _workers(stores, limit=1)
    assert await caps[0].enter(ANN)
    # w0 stays silent; w1 beats on. Within the lease, w0's hold still counts.
    assert not await caps[1].enter(ANN)
    later = now() + timedelta(seconds=31)
    await stores[1].heartbeat("w1", later)
    late = SharedCap(stores[1], "w1", 1, lambda: later)
    assert await late.enter(ANN)  # w0 looks dead: its hold was voided
    assert not await SharedCap(stores[2], "w2", 1, lambda: later).enter(ANN)  # w1 is alive: its hold counts


async def test_a_restart_under_the_same_name_drops_its_old_holds(stores: list[PostgresStore]) -> None:
    caps = await _workers(stores, limit=1)
    assert await caps[0].enter(ANN)
    again = SharedCap(stores[0], "w0", 1, now)
    await again.start()
    assert await again.enter(ANN)
