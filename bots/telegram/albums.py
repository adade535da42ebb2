"""Albums: Telegram delivers a media group as separate updates that share `media_group_id`. An album whose
caption starts with `/imagine` (DESIGN §4) is one request with all its photos, so the items are collected for a
short window, then handed on together.

- The first item of a group opens the album and waits for the window (`ALBUM_WINDOW`, or an injected wait);
  later items join it and wait until it has been handled, so every item's update stays open in the inbox
  until the round it belongs to is done.
- An item that arrives after its album was handed on (a redelivery, or a straggler) is dropped: the album's
  round is keyed by the media group, and a group already handled here is remembered for a while
  (`REMEMBER`). Across restarts the core's idempotency key (`album_key`) does the same.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telegram import Message

ALBUM_WINDOW = 1.0  # seconds: Telegram sends an album's items within a few hundred milliseconds
REMEMBER = 2_000  # albums handled recently, to drop their late or redelivered items

Wait = Callable[[], Awaitable[None]]
GroupId = tuple[int, str]


def album_key(chat_id: int, media_group_id: str) -> str:
    """The idempotency key of an album's round: the same for every item, so a redelivered one is a repeat."""
    return f"tg:album:{chat_id}:{media_group_id}"


def window_wait(seconds: float) -> Wait:
    async def wait() -> None:
        await asyncio.sleep(seconds)

    return wait


@dataclass
class Album:
    group: GroupId
    messages: list[Message] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def ordered(self) -> list[Message]:
        return sorted(self.messages, key=lambda m: m.message_id)


class AlbumCollector:
    def __init__(self, wait: Wait) -> None:
        self.wait = wait
        self._open: dict[GroupId, Album] = {}
        self._handled: OrderedDict[GroupId, None] = OrderedDict()

    def open_count(self, chat_id: int, media_group_id: str) -> int:
        """How many items the open album holds (0 when none is open): for tests."""
        album = self._open.get((chat_id, media_group_id))
        return len(album.messages) if album is not None else 0

    async def collect(self, message: Message, handle: Callable[[list[Message]], Awaitable[None]]) -> None:
        """Add an item. The first item of an album waits for the window and runs `handle` with every item
        (in message order); the others wait until that has finished. Late items of a handled album do nothing."""
        assert message.media_group_id is not None
        group = (message.chat.id, message.media_group_id)
        if group in self._handled:
            return
        album = self._open.get(group)
        if album is not None:
            album.messages.append(message)
            await album.done.wait()
            return
        album = self._open[group] = Album(group, [message])
        try:
            await self.wait()
            del self._open[group]
            self._handled[group] = None
            while len(self._handled) > REMEMBER:
                self._handled.popitem(last=False)
            await handle(album.ordered())
        finally:
            self._open.pop(group, None)
            album.done.set()
