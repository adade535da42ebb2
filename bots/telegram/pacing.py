"""Pacing of progress messages in a chat: at most one edit per interval per message, and in groups one per
chat across rounds (Telegram allows about 20 messages a minute per group, edits included); a round not shown
yet goes before re-ticks of rounds already shown. A 429 holds the whole chat (`FloodGate`)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from bots.telegram.send import FloodGate

PREVIEW_INTERVAL = 3.0


class EditPacer:
    """Paces progress edits: at most one per `interval` per message, and in groups one per `interval` per
    chat, whichever round it belongs to (previews are coalesced, never queued). A 429 holds the chat, for
    every send (`gate`, one per adapter)."""

    def __init__(
        self, interval: float = PREVIEW_INTERVAL, clock: Callable[[], float] = time.monotonic,
        gate: FloodGate | None = None,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # the ticker's; tests pair it with `clock`
        self.gate = gate if gate is not None else FloodGate(clock)
        self._next: dict[object, float] = {}
        self._unshown: dict[int, set[int]] = {}  # chat -> rounds waiting for their first progress message

    def first_waiting(self, chat_id: int, view_id: int, waiting: bool) -> None:
        """Note (or clear) that a round waits to show its progress message for the first time."""
        views = self._unshown.setdefault(chat_id, set())
        if waiting:
            views.add(view_id)
        else:
            views.discard(view_id)
            if not views:
                del self._unshown[chat_id]

    def others_unshown(self, chat_id: int, view_id: int) -> bool:
        """Another round in the chat still waits to be shown at all: re-ticks make way for it (fairness)."""
        return bool(self._unshown.get(chat_id, set()) - {view_id})

    def ready(self, chat_id: int, view_id: int, group: bool, chat_interval: float | None = None) -> bool:
        """May a progress edit go out now? Reserves the message's slot for `interval` and, in a group, the
        chat's slot for `chat_interval` (default `interval`)."""
        now = self.clock()
        keys: tuple[object, ...] = ((chat_id, view_id), chat_id) if group else ((chat_id, view_id),)
        if self.gate.remaining(chat_id) > 0 or any(self._next.get(key, -math.inf) > now for key in keys):
            return False
        for key in keys:
            spacing = chat_interval if key == chat_id and chat_interval is not None else self.interval
            self._next[key] = now + max(spacing, self.interval)
        if len(self._next) > 10_000:  # forget finished rounds and quiet chats
            self._next = {k: t for k, t in self._next.items() if t > now}
        return True

    def hold(self, chat_id: int, seconds: float) -> None:
        self.gate.hold(chat_id, seconds)
