"""Shows a round's progress without ever holding up the provider.

Rendering goes through the chat platform, which can be slow (rate limits, retried 5xx). If the studio
awaited each preview inside the provider call, a slow platform would eat the provider's time budget and
could make Easel abandon an image it has already paid for. So progress is rendered by a task of its own:
the latest preview wins, and earlier ones are dropped when the platform is slower than the stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from core.outcomes import Preview, RoundView

log = logging.getLogger(__name__)


class ProgressPump:
    def __init__(self, view: RoundView, round_id: int) -> None:
        self._view = view
        self._round_id = round_id
        self._start_pending = False
        self._preview: Preview | None = None
        self._task: asyncio.Task[None] | None = None

    def started(self) -> None:
        self._start_pending = True
        self._kick()

    def partial(self, preview: Preview) -> None:
        self._preview = preview
        self._kick()

    async def close(self) -> None:
        """Drop previews not shown yet (the result supersedes them) and wait for the one being shown, so the
        final delivery never races a preview edit."""
        self._preview = None
        if self._task is not None:
            try:
                await asyncio.shield(self._task)
            except asyncio.CancelledError:
                self._task.cancel()
                raise

    def cancel(self) -> None:
        self._preview = None
        if self._task is not None:
            self._task.cancel()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            if self._start_pending:
                self._start_pending = False
                await quietly(self._view.started(), "started", self._round_id)
            elif self._preview is not None:
                preview, self._preview = self._preview, None
                await quietly(self._view.partial(preview), "partial", self._round_id)
            else:
                return


async def quietly(call: Awaitable[object], what: str, round_id: int) -> None:
    """Progress rendering must never sink a round: log and go on."""
    try:
        await call
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("view.%s failed for round %d", what, round_id)
