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
from core.records import RoundState
from core.shared_caps import SharedCap
from core.store.postgres import PostgresStore
from tests.store.support import DISCORD, new_round

ANN = ("discord", "111")
BOB = ("discord", "222")


async def a_round(store: PostgresStore, user: tuple[str, str] = ANN) -> int:
    """An open round of `user` (a hold names its round; an ended round's hold stops counting)."""
    return (await store.create_round(new_round(user[1], key=DISCORD), now())).id


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


async def test_the_local_cap_counts_until_leave() -> None:
    cap = LocalCap(1)
    assert await cap.enter(ANN, 1) and not await cap.enter(ANN, 2) and cap.active(ANN) == 1
    cap.leave(ANN)
    assert await cap.enter(ANN, 3)


async def test_simultaneous_entries_on_every_worker_stop_at_the_cap(stores: list[PostgresStore]) -> None:
    caps = await _workers(stores, limit=2)
    ids = [await a_round(stores[0]) for _ in range(12)]
    bobs = await a_round(stores[0], BOB)
    entered = await asyncio.gather(*(caps[i % 3].enter(ANN, ids[i]) for i in range(12)), caps[0].enter(BOB, bobs))
    assert sum(entered[:12]) == 2  # twelve at once over three workers: exactly the cap got in
    assert entered[12]  # another user is not held by Ann's rounds
    refused = next(i for i, ok in enumerate(entered[:12]) if not ok)
    assert caps[refused % 3].active(ANN) == 2  # the refusal can say how many are in progress


async def test_leave_gives_the_place_back_fleet_wide(stores: list[PostgresStore]) -> None:
    caps = await _workers(stores, limit=1)
    assert await caps[0].enter(ANN, await a_round(stores[0]))
    assert not await caps[1].enter(ANN, await a_round(stores[1]))
    caps[0].leave(ANN)
    await caps[0].close()  # the release is written in the background
    assert await caps[1].enter(ANN, await a_round(stores[1]))
    with pytest.raises(RuntimeError):
        caps[2].leave(ANN)  # never entered there


async def test_a_dead_workers_holds_stop_counting_a_live_workers_are_kept(stores: list[PostgresStore]) -> None:
    caps = await _workers(stores, limit=1)
    assert await caps[0].enter(ANN, await a_round(stores[0]))
    # w0 stays silent; w1 beats on. Within the lease, w0's hold still counts.
    assert not await caps[1].enter(ANN, await a_round(stores[1]))
    later = now() + timedelta(seconds=31)
    await stores[1].heartbeat("w1", later)
    late = SharedCap(stores[1], "w1", 1, lambda: later)
    assert await late.enter(ANN, await a_round(stores[1]))  # w0 looks dead: its hold was voided
    w2 = SharedCap(stores[2], "w2", 1, lambda: later)
    assert not await w2.enter(ANN, await a_round(stores[2]))  # w1 is alive: its hold counts


async def test_a_restart_under_the_same_name_drops_its_old_holds(stores: list[PostgresStore]) -> None:
    caps = await _workers(stores, limit=1)
    assert await caps[0].enter(ANN, await a_round(stores[0]))
    again = SharedCap(stores[0], "w0", 1, now)
    await again.start()
    assert await again.enter(ANN, await a_round(stores[0]))


async def test_a_hold_whose_release_was_lost_stops_counting_when_its_round_ends(stores: list[PostgresStore]) -> None:
    caps = await _workers(stores, limit=1)
    first = await a_round(stores[0])
    assert await caps[0].enter(ANN, first)  # and its release never reaches the database
    assert not await caps[1].enter(ANN, await a_round(stores[1]))
    await stores[0].finish(first, RoundState.FAILED, "error", now())
    assert await caps[1].enter(ANN, await a_round(stores[1]))
