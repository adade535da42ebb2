"""A hand-written `RoundView` (`core.outcomes.RoundView`) that records what the round service asked it to
show: the round's info, queue positions, stages, previews, and exactly one result or refusal."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.outcomes import Preview, Refusal, RoundInfo, RoundResult, Stage

_ids = itertools.count(1000)


@dataclass
class RecordingView:
    events: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    previews: list[Preview] = field(default_factory=list)
    info: RoundInfo | None = None
    result: RoundResult | None = None
    refusal: Refusal | None = None
    refusals: list[Refusal] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    progress_id: str | None = None  # a progress message this view "posted" (Cancel lives there)
    fail_delivery: BaseException | None = None
    on_begin: Callable[[RoundInfo], Awaitable[None]] | None = None
    on_deliver: Callable[[RoundResult], Awaitable[None]] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    begun: asyncio.Event = field(default_factory=asyncio.Event)

    async def begin(self, info: RoundInfo) -> None:
        self.info = info
        self.begun.set()
        if self.on_begin is not None:
            await self.on_begin(info)

    async def stage(self, stage: Stage) -> None:
        self.stages.append(stage)

    def progress_message(self) -> str | None:
        return self.progress_id

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
        if self.on_deliver is not None:
            await self.on_deliver(result)
        if self.fail_delivery is not None:
            raise self.fail_delivery
        self.result = result
        self.message_ids = [str(next(_ids))]
        self.finished.set()
        return self.message_ids

    async def refuse(self, refusal: Refusal) -> None:
        self.events.append("refuse")
        self.refusal = refusal
        self.refusals.append(refusal)
        self.finished.set()
