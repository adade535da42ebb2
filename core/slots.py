"""A fair, bounded gate in front of the provider: at most `capacity` calls in flight, the rest wait in FIFO
order and are told their place in the queue when it changes."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class QueueFull(Exception):
    pass


class FairSlots:
    def __init__(self, capacity: int, queue_limit: int) -> None:
        self.capacity = capacity
        self.queue_limit = queue_limit
        self._free = capacity
        self._queue: deque[object] = deque()
        self._changed = asyncio.Event()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def in_use(self) -> int:
        return self.capacity - self._free

    async def acquire(self, on_position: Callable[[int], None]) -> None:
        """Wait for a slot. `on_position` is told the 1-based place in the queue when it changes; it must not
        block (it schedules the report), so a slow chat never delays the queue."""
        if self._free > 0 and not self._queue:
            self._free -= 1
            return
        if len(self._queue) >= self.queue_limit:
            raise QueueFull
        ticket = object()
        self._queue.append(ticket)
        reported = 0
        try:
            while True:
                if self._queue[0] is ticket and self._free > 0:
                    self._queue.popleft()
                    self._free -= 1
                    self._signal()
                    return
                position = self._queue.index(ticket) + 1
                if position != reported:
                    reported = position
                    on_position(position)
                await self._changed.wait()
        except BaseException:
            if ticket in self._queue:
                self._queue.remove(ticket)
                self._signal()
            raise

    def release(self) -> None:
        self._free += 1
        self._signal()

    def _signal(self) -> None:
        # Wake every waiter once; each re-checks its own place. A fresh Event per change avoids lost wake-ups.
        self._changed.set()
        self._changed = asyncio.Event()
