"""Notices: messages the core leaves for a channel (a round interrupted by a restart, a cancel from another
worker), sent by the platform's adapter once it is connected, each once."""

from __future__ import annotations

from core.events import Platform
from core.ports import Clock, Store
from core.records import PendingNotice


class Notices:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def take(self, platform: Platform) -> list[PendingNotice]:
        return await self.store.pending_notices(platform)

    async def sent(self, notice_id: int) -> None:
        await self.store.notice_sent(notice_id, self.clock())
