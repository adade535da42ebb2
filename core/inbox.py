"""The durable inbox: platform updates are written here before the platform is told they arrived, and removed
once handled. A crash in between loses nothing: the adapter replays what is left when it starts again.

Replaying is safe because rounds and moderator actions dedupe by idempotency key in the core; a read-only
command (e.g. a credits report) may answer twice after a crash. Rows older than a day are dropped unread: the
platform would not redeliver them either, and by then an answer would only confuse. Payloads are the
platform's update JSON (user text, file ids); never a token or a file URL (the adapter's duty)."""

from __future__ import annotations

from core.events import Platform
from core.ports import Clock, Store


class Inbox:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def put(self, platform: Platform, items: list[tuple[str, str]]) -> None:
        """Record (idempotency key, payload JSON) pairs in one transaction; known keys are left alone."""
        if items:
            await self.store.inbox_put(platform, items, self.clock())

    async def done(self, platform: Platform, idem_key: str) -> None:
        await self.store.inbox_done(platform, idem_key)

    async def pending(self, platform: Platform) -> list[str]:
        """Payloads recorded but not handled (a crash or a stop interrupted them), oldest first."""
        return [item.payload for item in await self.store.inbox_pending(platform, self.clock())]
