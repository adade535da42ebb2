"""Giving a shared lease back (a provider slot ticket, a per-user hold) without blocking the caller.

A release is a database write that may fail for a moment; one left undone holds the lease until this worker
stops (then other workers void it), so it is retried a few times in the background, and `drain` lets
shutdown wait for the ones still being written."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

ATTEMPTS = 6


class Releases:
    def __init__(self, what: str) -> None:
        self.what = what  # for the log: "provider slot", "user hold"
        self._tasks: set[asyncio.Task[None]] = set()

    def later(self, lease: int, release: Callable[[int], Awaitable[None]]) -> None:
        task = asyncio.get_running_loop().create_task(self._release(lease, release), name=f"easel-release-{lease}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait up to 5 s for the releases still being written."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)

    async def _release(self, lease: int, release: Callable[[int], Awaitable[None]]) -> None:
        for attempt in range(ATTEMPTS):
            try:
                await release(lease)
                return
            except Exception:
                log.warning("releasing %s %d failed (attempt %d)", self.what, lease, attempt + 1, exc_info=True)
                await asyncio.sleep(0.2 * 2**attempt)
        log.error("%s %d could not be released; it is held until this worker stops", self.what, lease)
