"""Helpers for the Telegram adapter tests: a hand-written FakeStudio (our own seam) that records what the
adapter asked and drives the RoundView through a scripted round, and an ERROR-log collector."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import DuplicateRequest, NotModerator, UserFacingError
from core.events import Actor, ChannelKey, Platform, RoundRequest, UserRef
from core.outcomes import Button, Notice, Preview, Refusal, RoundResult, RoundView
from core.studio import PendingNotice
from tests.fakes.fake_provider import png


class ErrorLog(logging.Handler):
    """Collects ERROR records; the fixture fails a test that logged one it did not expect."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        taken, self.records = self.records, []
        return taken


@dataclass
class Press:
    action: str
    key: ChannelKey
    actor: Actor
    idempotency_key: str


@dataclass
class FakeStudio:
    """Implements the Studio methods the adapter calls. Each round: queued(p) for each of `positions`,
    started, `previews` partials, then (after `gate`, if set) deliver a `result_image`, or refuse with
    `refusal`. An input image is fetched with `max_input_bytes` first; a UserFacingError from the fetch is
    refused like the core would."""

    positions: list[int] = field(default_factory=list)
    previews: int = 0
    refusal: Refusal | None = None
    gate: asyncio.Event | None = None
    result_image: bytes = field(default_factory=lambda: png(64, 48))
    result_size: tuple[int, int] = (64, 48)
    max_input_bytes: int = 20_000_000
    accepting: bool = True
    requests: list[RoundRequest] = field(default_factory=list)
    presses: list[Press] = field(default_factory=list)
    quota_calls: list[tuple[Any, ...]] = field(default_factory=list)
    seen_calls: list[tuple[Actor, str]] = field(default_factory=list)
    migrations: list[tuple[Platform, str, str]] = field(default_factory=list)
    fetched: list[bytes] = field(default_factory=list)
    delivered: list[list[str]] = field(default_factory=list)
    notices: list[PendingNotice] = field(default_factory=list)
    sent_notices: list[int] = field(default_factory=list)
    round_messages: set[tuple[ChannelKey, str]] = field(default_factory=set)
    inbox: dict[str, str] = field(default_factory=dict)  # idem_key -> payload, insertion order (oldest first)
    inbox_batches: list[list[str]] = field(default_factory=list)  # the keys of each inbox_put
    inbox_gate: asyncio.Event | None = None  # inbox_put waits for it when set (a slow database)
    inbox_failures: int = 0  # the next N inbox_put calls raise (a database that refuses writes)
    finished: int = 0
    on_submit: Callable[[RoundRequest, RoundView], Awaitable[None]] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- rounds ----------------------------------------------------------------------------------------

    async def submit(self, request: RoundRequest, view: RoundView) -> None:
        self.requests.append(request)
        try:
            if self.on_submit is not None:
                await self.on_submit(request, view)
            else:
                await self._round(request.prompt, request, view)
        finally:
            self.finished += 1
            self._signal()

    async def press(self, action: str, key: ChannelKey, actor: Actor, idempotency_key: str, view: RoundView) -> None:
        self.presses.append(Press(action, key, actor, idempotency_key))
        try:
            await self._round(f"reroll of {action}", RoundRequest(key, actor, "", idempotency_key), view)
        finally:
            self.finished += 1
            self._signal()

    async def _round(self, prompt: str, request: RoundRequest, view: RoundView) -> None:
        if request.input_image is not None:
            try:
                self.fetched.append(await request.input_image.fetch(self.max_input_bytes))
            except UserFacingError as error:
                await view.refuse(Refusal(error.message, error.reason, error.ephemeral))
                return
        for position in self.positions:
            await view.queued(position)
        await view.started()
        round_id = next(self._ids)
        for index in range(self.previews):
            await view.partial(Preview(png(16, 16, (index * 60, 0, 0)), index, round_id))
        if self.gate is not None:
            await self.gate.wait()
        if self.refusal is not None:
            await view.refuse(self.refusal)
            return
        width, height = self.result_size
        result = RoundResult(
            round_id=round_id, number=round_id, image=self.result_image, width=width, height=height,
            caption=f"#{round_id} · {prompt} · 9 credits left today", credits_left=9,
            buttons=(Button("Reroll", f"reroll:{round_id}"),),
        )
        ids = await view.deliver(result)
        self.delivered.append(ids)
        for message_id in ids:
            self.round_messages.add((request.key, message_id))

    async def is_round_message(self, key: ChannelKey, message_id: str) -> bool:
        return (key, message_id) in self.round_messages

    async def wait_finished(self, count: int = 1, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while self.finished < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def _signal(self) -> None:
        self._changed.set()

    # -- quotas ----------------------------------------------------------------------------------------

    def _moderator(self, actor: Actor) -> None:
        if not actor.is_moderator:
            raise NotModerator("Only moderators can do that here.")

    async def credits(self, key: ChannelKey, actor: Actor, target: UserRef | None = None) -> Notice:
        self.quota_calls.append(("credits", key, actor, target))
        if target is not None:
            self._moderator(actor)
        return Notice("3 credits left today", ephemeral=True)

    async def set_daily(self, key: ChannelKey, actor: Actor, target: UserRef, daily: int, idem: str) -> Notice:
        self.quota_calls.append(("set_daily", key, actor, target, daily, idem))
        self._moderator(actor)
        return Notice(f"set {daily}")

    async def grant(self, key: ChannelKey, actor: Actor, target: UserRef, credits: int, idem: str) -> Notice:
        self.quota_calls.append(("grant", key, actor, target, credits, idem))
        self._moderator(actor)
        if idem in {c[-1] for c in self.quota_calls[:-1]}:
            raise DuplicateRequest(idem)
        return Notice(f"granted {credits}")

    async def set_default(self, key: ChannelKey, actor: Actor, daily: int, idem: str) -> Notice:
        self.quota_calls.append(("set_default", key, actor, daily, idem))
        self._moderator(actor)
        return Notice(f"default {daily}")

    async def ban(self, key: ChannelKey, actor: Actor, target: UserRef, idem: str) -> Notice:
        self.quota_calls.append(("ban", key, actor, target, idem))
        self._moderator(actor)
        return Notice("banned")

    async def unban(self, key: ChannelKey, actor: Actor, target: UserRef, idem: str) -> Notice:
        self.quota_calls.append(("unban", key, actor, target, idem))
        self._moderator(actor)
        return Notice("unbanned")

    async def usage(self, key: ChannelKey, actor: Actor) -> Notice:
        self.quota_calls.append(("usage", key, actor))
        return Notice("community usage" if actor.is_moderator else "your usage")

    async def seen(self, actor: Actor, community: str) -> None:
        self.seen_calls.append((actor, community))

    async def migrate_community(self, platform: Platform, old: str, new: str) -> None:
        self.migrations.append((platform, old, new))
        self.finished += 1
        self._signal()

    async def take_notices(self, platform: Platform) -> list[PendingNotice]:
        return [n for n in self.notices if n.id not in self.sent_notices]

    async def notice_sent(self, notice_id: int) -> None:
        self.sent_notices.append(notice_id)
        self._signal()

    def help_text(self, platform: Platform) -> str:
        return f"help for {platform}"

    # -- inbox -----------------------------------------------------------------------------------------

    async def inbox_put(self, platform: Platform, items: list[tuple[str, str]]) -> None:
        assert platform == Platform.TELEGRAM
        if self.inbox_gate is not None:
            await self.inbox_gate.wait()
        if self.inbox_failures:
            self.inbox_failures -= 1
            raise sqlite3.OperationalError("database is locked")
        self.inbox_batches.append([key for key, _ in items])
        for key, payload in items:
            self.inbox.setdefault(key, payload)
        self._signal()

    async def inbox_done(self, platform: Platform, idem_key: str) -> None:
        self.inbox.pop(idem_key, None)
        self._signal()

    async def inbox_pending(self, platform: Platform) -> list[str]:
        return list(self.inbox.values())
