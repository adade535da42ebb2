"""`SharedSlots`: the provider gate (`core.ports.Slots`) shared by every worker on one PostgreSQL.

Each acquire is a ticket row (`core.ports.FleetStore`): tickets are granted oldest first while fewer than the
cap are granted, by whichever worker next looks (an enqueue, a release, a poll), so no worker waits on
another to notice. A waiter takes its wake-up event first, then checks its ticket, then waits for a
notification from any worker (LISTEN/NOTIFY), re-checking at least every `MAX_PAUSE` seconds in case one was
lost. Its place in the queue is counted over the whole fleet.

A ticket is a lease on the worker's heartbeat: when a worker dies its tickets are voided by the next grant
after `stale_after` seconds, so the slots it held come back to the fleet. A worker restarting under the same
name drops its old tickets first (`start`).

The per-user cap is not here (a slot does not know whose round it serves): see `core.shared_caps`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from core.leases import Releases
from core.ports import Clock, FleetStore
from core.slots import QueueFull

log = logging.getLogger(__name__)

MIN_PAUSE = 0.05  # seconds: first re-check while waiting without a notification
MAX_PAUSE = 1.0


class SharedSlots:
    def __init__(
        self, store: FleetStore, owner: str, capacity: int, queue_limit: int, clock: Clock, stale_after: float = 30.0
    ) -> None:
        self.store = store
        self.owner = owner
        self.capacity = capacity
        self.queue_limit = queue_limit
        self.clock = clock
        self.stale_after = stale_after
        self._held: list[int] = []
        self._waiting = 0
        self._releases = Releases("provider slot")

    @property
    def waiting(self) -> int:
        """Acquires of this worker that wait for a slot."""
        return self._waiting

    @property
    def in_use(self) -> int:
        """Slots this worker holds (the fleet's total is `FleetStore.slot_counts`)."""
        return len(self._held)

    async def start(self) -> None:
        await self.store.slot_reset(self.owner)

    async def close(self) -> None:
        """Wait for releases still being written."""
        await self._releases.drain()

    async def acquire(self, on_position: Callable[[int], None]) -> None:
        self._waiting += 1
        try:
            ticket = await self._wait_for_grant(on_position)  # a ticket it does not return is released
        finally:
            self._waiting -= 1
        self._held.append(ticket)

    async def _wait_for_grant(self, on_position: Callable[[int], None]) -> int:
        woken = await self.store.signal("slots")
        got = await self.store.slot_enqueue(self.owner, self.capacity, self.queue_limit, self.clock(), self.stale_after)
        if got is None:
            raise QueueFull
        ticket, place = got
        try:
            reported, pause = 0, MIN_PAUSE
            while place != 0:
                if place < 0:  # voided (this worker looked dead to the others): queue again, at the back
                    log.warning("a provider slot ticket was voided; queueing again")
                    got = await self.store.slot_enqueue(
                        self.owner, self.capacity, self.queue_limit, self.clock(), self.stale_after
                    )
                    if got is None:
                        raise QueueFull
                    ticket, place = got
                    continue
                if place != reported:
                    reported = place
                    on_position(place)
                try:
                    await asyncio.wait_for(woken.wait(), pause)
                    pause = MIN_PAUSE
                except TimeoutError:
                    pause = min(MAX_PAUSE, pause * 2)
                woken = await self.store.signal("slots")
                place = await self.store.slot_poll(self.owner, ticket, self.capacity, self.clock(), self.stale_after)
        except BaseException:
            self._release_later(ticket)
            raise
        return ticket

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("release() without a slot held")
        self._release_later(self._held.pop())

    def _release_later(self, ticket: int) -> None:
        self._releases.later(ticket, self.store.slot_release)
