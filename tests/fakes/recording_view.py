"""A hand-written `RoundView` that records what the studio asked it to show."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from core.outcomes import Preview, Refusal, RoundResult

_ids = itertools.count(1000)


@dataclass
class RecordingView:
    events: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    previews: list[Preview] = field(default_factory=list)
    result: RoundResult | None = None
    refusal: Refusal | None = None
    message_ids: list[str] = field(default_factory=list)
    fail_delivery: BaseException | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def queued(self, position: int) -> None:
        self.events.append("queued")
        self.positions.append(position)

    async def started(self) -> None:
        self.events.append("started")

    async def partial(self, preview: Preview) -> None:
        self.events.append("partial")
        self.previews.append(preview)

    async def deliver(self, result: RoundResult) -> list[str]:
        self.events.append("deliver")
        if self.fail_delivery is not None:
            raise self.fail_delivery
        self.result = result
        self.message_ids = [str(next(_ids))]
        self.finished.set()
        return self.message_ids

    async def refuse(self, refusal: Refusal) -> None:
        self.events.append("refuse")
        self.refusal = refusal
        self.finished.set()
