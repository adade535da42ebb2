"""`SharedSlots`: the provider gate (`core.ports.Slots`) shared by every worker on one PostgreSQL.

Each acquire is a ticket row (`core.ports.FleetStore`): tickets are granted oldest first while fewer than the
cap are granted, by whichever worker next looks (an enqueue, a release, a poll), so no worker waits on
another to notice, and a release grants the next tickets itself. Grants are announced by ticket id
(LISTEN/NOTIFY), so only the granted waiters wake: with hundreds waiting, waking all of them at every grant
would cost the fleet hundreds of queries per grant. A waiter also re-checks on a timeout (at most every
`MAX_PAUSE` seconds): its place in the queue, counted over the whole fleet, and slots a dead worker held.

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

MIN_PAUSE = 0.5  # seconds: first re-check while waiting without an announcement of this ticket's grant
MAX_PAUSE = 4.0  # a long wait re-checks this often (the user's place, a dead worker's slots)


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
        await self.store.signal("slots")  # listening before the first ticket, so no grant goes unheard

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
                # Woken only when this ticket's grant is announced; the timeout re-checks (the place moves
                # for the user, a dead worker's slots are reclaimed, an announcement may have been lost).
                granted = await self.store.slot_granted(ticket)
                try:
                    await asyncio.wait_for(granted.wait(), pause)
                except TimeoutError:
                    pause = min(MAX_PAUSE, pause * 2)
                if self.store.slot_announced(ticket):
                    break  # its grant was announced: nothing to ask
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
        self._releases.later(ticket, self._release)

    async def _release(self, ticket: int) -> None:
        await self.store.slot_release(ticket, self.capacity, self.clock(), self.stale_after)
