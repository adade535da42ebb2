"""Several workers on one PostgreSQL, one Telegram bot: which worker polls, and how the others get work.

- `StoreLeadership`: exactly one worker polls Telegram's update stream. Leadership is a session advisory lock
  on a connection of its own (`FleetStore.try_lead`): it is released the moment the holder's process dies
  (its connection closes; TCP keepalives bound a silent network loss to ~15 s). Every other would-be poller
  tries again each `interval` seconds, so a dead leader is replaced within about a second. Workers start
  competing only once their poller asks (`wait_leading`): a worker without Telegram never leads.
- `SharedInbox`: the durable inbox when workers share it. The leader (or whichever worker a webhook POST
  reached) stores updates as before; every worker claims them (`FleetStore.inbox_claim`) and runs them, so
  the work fans out. Claims are leased on the worker's heartbeat: a dead worker's updates are claimed again
  by the others after the stale time (their rounds are deduplicated by idempotency key in the core)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from core.events import Platform
from core.inbox import Inbox
from core.ports import Clock, FleetStore, Store

log = logging.getLogger(__name__)

LEAD_INTERVAL = 1.0  # seconds between attempts to lead (and checks that the lock is still held)


class StoreLeadership:
    def __init__(self, store: FleetStore, name: str, interval: float = LEAD_INTERVAL) -> None:
        self.store = store
        self.name = name
        self.interval = interval
        self._leading = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        self._ensure_running()
        await self._leading.wait()

    async def wait_lost(self) -> None:
        await self._lost.wait()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"easel-lead-{self.name}")

    async def _run(self) -> None:
        while True:
            try:
                held = await self.store.try_lead(self.name)
            except Exception:
                log.warning("could not check the %s leadership", self.name, exc_info=True)
                held = False
            if held and not self.leading:
                log.info("this worker now leads %s", self.name)
                self._lost.clear()
                self._leading.set()
            elif not held and self.leading:
                log.warning("this worker no longer leads %s", self.name)
                self._leading.clear()
                self._lost.set()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._leading.clear()
        self._lost.set()
        with contextlib.suppress(Exception):
            await self.store.resign(self.name)


class SharedInbox(Inbox):
    """`core.ports.SharedInboxPort` over a store that is both `Store` and `FleetStore`."""

    def __init__(
        self, store: Store, fleet: FleetStore, clock: Clock, owner: str, leadership: StoreLeadership,
        stale_after: float,
    ) -> None:
        super().__init__(store, clock)
        self.fleet = fleet
        self.owner = owner
        self._leadership = leadership
        self.stale_after = stale_after
        self._armed: asyncio.Event | None = None

    @property
    def leadership(self) -> StoreLeadership:
        return self._leadership

    async def claim(self, platform: Platform, limit: int) -> list[str]:
        # Armed before claiming: an update stored while the claim runs still wakes the next `wait`.
        self._armed = await self.fleet.signal("inbox")
        items = await self.fleet.inbox_claim(platform, self.owner, limit, self.clock(), self.stale_after)
        return [item.payload for item in items]

    async def wait(self, patience: float) -> None:
        armed = self._armed or await self.fleet.signal("inbox")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(armed.wait(), patience)
