"""A worker's start and stop, decided by the rounds' persisted states.

At start a worker takes over the open rounds whose owner is gone (on SQLite: every open round, since the data
directory is held by one process; on PostgreSQL: rounds of workers whose heartbeat stopped). A background round
the provider may still hold waits for its platform's adapter and is then followed to its end, delivered once
and charged once; the others are refunded and their users told. At a stop, background rounds stay with the
provider for the next start; the rest get a short grace, then are refunded and their users told."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from core import words
from core.events import Platform
from core.outcomes import RoundView
from core.records import Round, RoundState
from core.running import RoundRunner, Shared
from core.texts import say

log = logging.getLogger(__name__)

# A view the adapter builds for a round picked up after a restart: it posts into the round's channel.
ViewFactory = Callable[[Round], RoundView]


class Recovery:
    def __init__(self, shared: Shared, runner: RoundRunner) -> None:
        self.s = shared
        self.runner = runner
        self._views: dict[Platform, ViewFactory] = {}  # platforms whose adapter is connected

    async def start(self, stale_after: float) -> int:
        """Load the safety salt, announce this worker, and take over orphaned rounds (this worker id's own
        too: nothing runs here yet, so they are from an earlier run that kept its id, e.g. pid 1 in a
        container). Returns how many rounds were taken over."""
        deps = self.s.deps
        self.s.salt = (await deps.store.safety_salt()).encode()
        await deps.store.heartbeat(self.s.worker, deps.clock())
        return await self.adopt(stale_after, own=True)

    async def adopt(self, stale_after: float, *, own: bool = False) -> int:
        deps = self.s.deps
        earlier = await deps.store.open_rounds(owner=self.s.worker) if own else []
        adopted = earlier + await deps.store.adopt_rounds(self.s.worker, deps.clock(), stale_after)
        for item in adopted:
            if item.id in self.s.live:
                continue
            if item.background and item.response_id and deps.provider.background:
                self.s.resumable.setdefault(item.key.platform, []).append(item)
            else:
                await self._interrupted_while_away(item)
        if adopted:
            log.warning("took over %d rounds left open by a stopped worker", len(adopted))
        for platform, view_for in self._views.items():  # taken over while running: follow them now
            self.resume(platform, view_for)
        return len(adopted)

    async def _interrupted_while_away(self, item: Round) -> None:
        deps = self.s.deps
        now = deps.clock()
        await deps.store.finish(item.id, RoundState.FAILED, "interrupted", now)
        text = say(item.lang, "round.interrupted", number=item.number, prompt=words.snippet(item.prompt, 80))
        await deps.store.add_notice(item.key, None, text, now, item.user_id)

    def resume(self, platform: Platform, view_for: ViewFactory) -> int:
        """An adapter is connected: follow its platform's background rounds to their end (now, and those taken
        over from a dead worker later)."""
        self._views[platform] = view_for
        items = self.s.resumable.pop(platform, [])
        for item in items:
            self.s.spawn(self.runner.resume(item, view_for(item)), f"easel-resume-{item.id}")
        return len(items)

    async def drain(self, grace: float) -> int:
        """Stop taking rounds. Background rounds the provider holds are left for the next start (nothing is
        refunded, nobody is told twice); queued rounds are refunded at once; rounds the provider runs in the
        foreground get `grace` seconds, then are refunded. Returns how many were interrupted."""
        self.s.accepting = False
        for live in list(self.s.live.values()):
            if live.outer is None:
                continue
            if live.detachable:
                live.detach = True
                live.outer.cancel()
            elif live.phase is RoundState.QUEUED:
                live.outer.cancel()
        running = {live.outer for live in self.s.live.values() if live.outer is not None and not live.outer.done()}
        running |= self.s.tasks
        if running:
            _, running = await asyncio.wait(running, timeout=grace)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=3)
        await self.s.deps.store.retire(self.s.worker)
        return len(running)
