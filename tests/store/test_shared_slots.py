"""Shared provider slots (`core.shared_slots.SharedSlots`) on a real PostgreSQL: one cap for every worker, FIFO
by enqueue order with places counted over the fleet, a dead worker's slots come back, a full queue refuses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from core.ports import Slots
from core.shared_slots import SharedSlots
from core.slots import FairSlots, QueueFull
from core.store.postgres import PostgresStore


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(PostgresStore(pg_url, max_size=4)) for _ in range(3)]


async def _workers(stores: list[PostgresStore], capacity: int, queue_limit: int = 1000) -> list[SharedSlots]:
    slots = []
    for index, store in enumerate(stores):
        await store.heartbeat(f"w{index}", now())
        one = SharedSlots(store, f"w{index}", capacity, queue_limit, now)
        await one.start()
        slots.append(one)
    return slots


def test_both_gates_are_slots() -> None:
    gates: list[Slots] = [FairSlots(1, 1)]
    assert gates


async def test_one_cap_for_every_worker(stores: list[PostgresStore]) -> None:
    slots = await _workers(stores, capacity=3)
    inside, peak, done = 0, 0, 0

    async def one(index: int) -> None:
        nonlocal inside, peak, done
        gate = slots[index % 3]
        await gate.acquire(lambda place: None)
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0.01)
        inside -= 1
        done += 1
        gate.release()

    await asyncio.gather(*(one(index) for index in range(30)))
    assert done == 30
    assert 2 <= peak <= 3  # the workers shared the cap, and never exceeded it
    await asyncio.gather(*(gate.close() for gate in slots))
    assert await stores[0].slot_counts() == (0, 0)


async def test_fifo_over_the_fleet_with_places(stores: list[PostgresStore]) -> None:
    slots = await _workers(stores, capacity=1)
    await slots[0].acquire(lambda place: None)
    order: list[int] = []
    places: dict[int, list[int]] = {}

    async def one(index: int, queued: asyncio.Event) -> None:
        gate = slots[index % 3]

        def told(place: int) -> None:
            places.setdefault(index, []).append(place)
            queued.set()

        await gate.acquire(told)
        order.append(index)
        await asyncio.sleep(0.005)
        gate.release()

    tasks = []
    for index in range(9):  # each waits for its place before the next queues: tickets in this order
        queued = asyncio.Event()
        tasks.append(asyncio.create_task(one(index, queued)))
        await asyncio.wait_for(queued.wait(), 5)
    assert [p[0] for _, p in sorted(places.items())] == list(range(1, 10))  # places over every worker
    slots[0].release()
    await asyncio.gather(*tasks)
    assert order == list(range(9))
    assert all(p == sorted(p, reverse=True) for p in places.values())  # a place only ever moves up
    await asyncio.gather(*(gate.close() for gate in slots))
    assert await stores[0].slot_counts() == (0, 0)


async def test_a_dead_workers_slots_come_back(stores: list[PostgresStore]) -> None:
    slots = await _workers(stores[:2], capacity=1)
    await slots[0].acquire(lambda place: None)  # w0 holds the only slot, then dies (no more heartbeats)
    old = now() - timedelta(seconds=60)
    await stores[0].heartbeat("w0", old)
    await asyncio.wait_for(slots[1].acquire(lambda place: None), 10)
    assert slots[1].in_use == 1
    slots[1].release()
    await slots[1].close()


async def test_a_live_workers_slot_is_kept_and_the_queue_has_a_limit(stores: list[PostgresStore]) -> None:
    slots = await _workers(stores[:2], capacity=1, queue_limit=1)
    await slots[0].acquire(lambda place: None)
    told: list[int] = []
    waiter = asyncio.create_task(slots[1].acquire(told.append))
    while not told:
        await asyncio.sleep(0.01)
    assert told == [1]
    with pytest.raises(QueueFull):
        await slots[0].acquire(lambda place: None)
    await asyncio.sleep(0.3)
    assert not waiter.done()  # w0 is alive: its slot is never taken
    slots[0].release()
    await asyncio.wait_for(waiter, 5)
    slots[1].release()
    waiter2 = asyncio.create_task(slots[0].acquire(lambda place: None))
    await asyncio.wait_for(waiter2, 5)
    waiter2.cancel()
    slots[0].release()
    await asyncio.gather(*(gate.close() for gate in slots))
    assert await stores[0].slot_counts() == (0, 0)


async def test_a_cancelled_waiter_leaves_the_queue(stores: list[PostgresStore]) -> None:
    slots = await _workers(stores[:1], capacity=1)
    await slots[0].acquire(lambda place: None)
    told: list[int] = []
    waiter = asyncio.create_task(slots[0].acquire(told.append))
    while not told:
        await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await slots[0].close()
    assert await stores[0].slot_counts() == (1, 0)
    slots[0].release()
    await slots[0].close()
    assert await stores[0].slot_counts() == (0, 0)


class CountingStore(PostgresStore):
    """Counts the waiters' re-checks (`slot_poll`)."""

    polls = 0

    async def slot_poll(self, owner: str, ticket: int, capacity: int, now: datetime, stale_after: float) -> int:
        self.polls += 1
        return await super().slot_poll(owner, ticket, capacity, now, stale_after)


async def test_a_grant_wakes_its_waiter_only(pg_url: str) -> None:
    """Many waiters, one slot: each release wakes the next waiter, not all of them (which would cost about
    waiters x grants re-checks: 40 x 40 / 2 = 800 here)."""
    store = CountingStore(pg_url, max_size=8)
    async with store:
        gate = (await _workers([store], capacity=1))[0]
        order: list[int] = []

        async def one(index: int) -> None:
            await gate.acquire(lambda place: None)
            order.append(index)
            await asyncio.sleep(0.002)
            gate.release()

        await asyncio.wait_for(asyncio.gather(*(one(index) for index in range(40))), 60)
        await gate.close()
        assert sorted(order) == list(range(40))
        assert store.polls <= 2 * 40, store.polls  # about one re-check per waiter, plus the odd timeout
        assert await store.slot_counts() == (0, 0)


async def test_overhead_of_an_uncontended_acquire(
    stores: list[PostgresStore], capsys: pytest.CaptureFixture[str]
) -> None:
    """A figure, not an assertion: what one acquire + release costs against a local PostgreSQL."""
    slots = await _workers(stores[:1], capacity=8)
    await slots[0].acquire(lambda place: None)  # warm the listener and the pool
    slots[0].release()
    await slots[0].close()
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        await slots[0].acquire(lambda place: None)
        slots[0].release()
    await slots[0].close()
    per = (time.perf_counter() - started) / rounds * 1000
    with capsys.disabled():
        print(f"\nshared slots: acquire+release {per:.2f} ms each (uncontended, local PostgreSQL)")


async def test_one_allowance_paces_every_worker(stores: list[PostgresStore]) -> None:
    """`pace`: sends from two workers draw on one bucket (10 a second, bursts of 5)."""
    waits = [await stores[n % 2].pace("bench", 10, 5) for n in range(20)]
    assert waits[:5] == [0, 0, 0, 0, 0]  # the burst
    assert all(later > earlier for earlier, later in pairwise(waits[5:]))  # then queued
    assert 1.2 < waits[-1] <= 1.5  # the 20th waits for 15 sends at 10 a second (less what drained meanwhile)
    assert await stores[0].pace("other", 10, 5) == 0  # another allowance is separate



async def test_live_workers_are_those_with_a_fresh_heartbeat(stores: list[PostgresStore]) -> None:
    """What each worker's share of a per-bot limit is divided by when the fleet's allowance cannot be asked."""
    await stores[0].heartbeat("w0", now())
    await stores[1].heartbeat("w1", now() - timedelta(seconds=60))  # silent for a minute: gone
    await stores[2].heartbeat("w2", now())
    assert await stores[0].live_workers(now(), 30) == 2
    await stores[2].retire("w2")
    assert await stores[1].live_workers(now(), 30) == 1
