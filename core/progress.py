"""Shows a round's progress without ever holding up the round.

Rendering goes through the chat platform, which can be slow (rate limits, flood holds, retried 5xx). If the
round awaited each progress call, a slow chat would hold a provider slot or eat the provider's time budget,
and a flood-held chat would stall the queue for everyone. So progress is rendered by a task of its own:
the latest state wins, and older ones are dropped when the platform is slower than the round."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from core.outcomes import Preview, RoundView, Stage

log = logging.getLogger(__name__)

CLOSE_GRACE = 2.0  # seconds the result waits for a progress call in flight before cutting it off


class ProgressPump:
    def __init__(self, view: RoundView, round_id: int) -> None:
        self._view = view
        self._round_id = round_id
        self._position: int | None = None
        self._start_pending = False
        self._stage: Stage | None = None
        self._preview: Preview | None = None
        self._task: asyncio.Task[None] | None = None

    def queued(self, position: int) -> None:
        self._position = position
        self._kick()

    def started(self) -> None:
        self._position = None
        self._start_pending = True
        self._kick()

    def stage(self, stage: Stage) -> None:
        self._stage = stage
        self._kick()

    def partial(self, preview: Preview) -> None:
        self._preview = preview
        self._kick()

    async def close(self) -> None:
        """Drop what is not shown yet (the result supersedes it) and wait, briefly, for the call being made,
        so the final delivery does not race a progress edit; a call stuck longer (a chat under a flood hold)
        is cut off rather than holding the result."""
        self._position, self._stage, self._preview = None, None, None
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_GRACE)
            except TimeoutError:
                self._task.cancel()
            except asyncio.CancelledError:
                self._task.cancel()
                raise

    def cancel(self) -> None:
        self._position, self._stage, self._preview = None, None, None
        if self._task is not None:
            self._task.cancel()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        view, rid = self._view, self._round_id
        while True:
            if self._position is not None:
                position, self._position = self._position, None
                await quietly(view.queued(position), "queued", rid)
            elif self._start_pending:
                self._start_pending = False
                await quietly(view.started(), "started", rid)
            elif self._stage is not None:
                stage, self._stage = self._stage, None
                await quietly(view.stage(stage), "stage", rid)
            elif self._preview is not None:
                preview, self._preview = self._preview, None
                await quietly(view.partial(preview), "partial", rid)
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
