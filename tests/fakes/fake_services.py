"""One hand-written fake of the services adapters talk to (`core.ports.Services`), shared by the Discord and
Telegram adapter tests.

`FakeServices` structurally satisfies `RoundsPort`, `DeskPort`, `NoticesPort` and `InboxPort` (their method
names do not overlap); `.services` hands the adapter a `core.ports.Services` built from it. It records what
the adapter asked and plays each round through the adapter's `RoundView` the way the round service does:

    dedupe by idempotency key -> fetch the input image -> begin(RoundInfo with a Cancel button)
    -> queued(p) for each of `positions` -> started -> stage(s) for each of `stages` -> `previews` partials
    -> wait for `gate` (or a cancel) -> deliver a result, or refuse with `refusal`.

A round waiting at the gate can be cancelled through `press("cancel:N")` or `cancel(key, actor, message_id)`
(the id of the view's `progress_message()`); it then refuses with a public "cancelled" refusal.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.errors import APOLOGY_ID, DuplicateRequest, NotModerator, UserFacingError
from core.events import Actor, ChannelKey, DeskCommand, Platform, RoundRequest, Verb
from core.outcomes import Button, Notice, Preview, Refusal, RoundInfo, RoundResult, RoundView, Stage
from core.ports import Services
from core.records import PendingNotice, Round
from core.spec import Background
from core.texts import say
from tests.fakes.fake_provider import png

MODERATOR_VERBS = frozenset({Verb.SET, Verb.GRANT, Verb.DEFAULT, Verb.BAN, Verb.UNBAN})


@dataclass(frozen=True, slots=True)
class Press:
    action: str
    key: ChannelKey
    actor: Actor
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class CancelCall:
    key: ChannelKey
    actor: Actor
    message_id: str


@dataclass
class _Live:
    """A round waiting at the gate: the view and the event a cancel sets."""

    number: int
    key: ChannelKey
    view: RoundView
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


def default_desk_notice(command: DeskCommand) -> Notice:
    """The answer the fake desk gives to a command that was allowed."""
    verb, amount = command.verb, command.amount
    if verb is Verb.SHOW:
        return Notice("3 credits left today", ephemeral=True)
    if verb is Verb.USAGE:
        return Notice("community usage" if command.actor.is_moderator else "your usage")
    if verb is Verb.LANGUAGE:
        return Notice(f"language {command.language or 'auto'}")
    return {
        Verb.SET: Notice(f"set {amount}"),
        Verb.GRANT: Notice(f"granted {amount}"),
        Verb.DEFAULT: Notice(f"default {amount}"),
        Verb.BAN: Notice("banned"),
        Verb.UNBAN: Notice("unbanned"),
    }[verb]


@dataclass
class FakeServices:
    # -- the script of each round ------------------------------------------------------------------------
    positions: list[int] = field(default_factory=list)  # queued(p) for each, in order
    stages: list[Stage] = field(default_factory=list)  # stage(s) for each, after started
    previews: int = 0  # partial previews before the result
    refusal: Refusal | None = None  # refuse instead of delivering
    refuse_early: bool = False  # refuse before queued/started (a check at the door) instead of at the end
    error: BaseException | None = None  # raised from submit/press (an unexpected failure in the core)
    gate: asyncio.Event | None = None  # rounds wait for it before delivering (and can be cancelled then)
    result_image: bytes = field(default_factory=lambda: png(64, 48))
    result_size: tuple[int, int] = (64, 48)
    result_transparent: bool = False  # deliver as transparent (also when the request asks for it)
    caption: str = "#{n} · {prompt} · 9 credits left today"  # formatted with n, prompt
    lang: str = "en"  # RoundInfo.lang
    max_input_bytes: int = 20_000_000
    dedupe: bool = True  # a repeated idempotency key does nothing (like the core)
    on_submit: Callable[[RoundRequest, RoundView], Awaitable[None]] | None = None  # replaces the script

    # -- the desk ---------------------------------------------------------------------------------------
    desk_notice: Callable[[DeskCommand], Notice] = default_desk_notice
    help: str | None = None  # help_text's answer; default "help for <platform>"

    # -- recorded ---------------------------------------------------------------------------------------
    requests: list[RoundRequest] = field(default_factory=list)
    presses: list[Press] = field(default_factory=list)
    cancels: list[CancelCall] = field(default_factory=list)
    desk_commands: list[DeskCommand] = field(default_factory=list)
    seen_calls: list[tuple[Actor, str]] = field(default_factory=list)
    migrations: list[tuple[Platform, str, str]] = field(default_factory=list)
    help_calls: list[tuple[Platform, str]] = field(default_factory=list)
    resumed: list[Platform] = field(default_factory=list)
    fetched: list[bytes | BaseException] = field(default_factory=list)
    infos: list[RoundInfo] = field(default_factory=list)
    delivered: list[list[str]] = field(default_factory=list)
    results: list[RoundResult] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    deliver_errors: list[BaseException] = field(default_factory=list)
    duplicates: int = 0
    round_messages: set[tuple[ChannelKey, str]] = field(default_factory=set)
    finished: int = 0  # submits and presses that returned, whatever the outcome

    # -- notices ----------------------------------------------------------------------------------------
    notices: list[PendingNotice] = field(default_factory=list)  # what `take` offers until marked sent
    sent_notices: list[int] = field(default_factory=list)

    # -- inbox ------------------------------------------------------------------------------------------
    inbox: dict[str, str] = field(default_factory=dict)  # idem_key -> payload, oldest first
    inbox_batches: list[list[str]] = field(default_factory=list)  # the keys of each put
    inbox_gate: asyncio.Event | None = None  # put waits for it when set (a slow database)
    inbox_failures: int = 0  # the next N puts raise (a database that refuses writes)

    _keys: set[str] = field(default_factory=set)
    _rounds: int = 0
    _live: dict[int, _Live] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def services(self) -> Services:
        return Services(rounds=self, desk=self, notices=self, inbox=self)

    # -- waiting ----------------------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def wait_finished(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until `count` submits/presses have returned (delivered, refused, cancelled or deduped)."""
        await self.wait_until(lambda: self.finished >= count, timeout)

    async def wait_live(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until `count` rounds are waiting at the gate."""
        await self.wait_until(lambda: len(self._live) >= count, timeout)

    def _signal(self) -> None:
        self._changed.set()

    # -- RoundsPort -------------------------------------------------------------------------------------

    async def submit(self, request: RoundRequest, view: RoundView) -> None:
        self.requests.append(request)
        self._signal()
        try:
            if self._duplicate(request.idempotency_key):
                return
            if self.error is not None:
                raise self.error
            if self.on_submit is not None:
                await self.on_submit(request, view)
            else:
                await self._round(request, view)
        finally:
            self.finished += 1
            self._signal()

    async def press(self, action: str, key: ChannelKey, actor: Actor, idempotency_key: str, view: RoundView) -> None:
        self.presses.append(Press(action, key, actor, idempotency_key))
        self._signal()
        try:
            if self._duplicate(idempotency_key):
                return
            if self.error is not None:
                raise self.error
            verb, _, arg = action.partition(":")
            if verb == "cancel" and arg.isdigit():
                live = self._live.get(int(arg))
                if live is None or live.key.community != key.community:
                    await self._refuse(view, Refusal("That round is not running any more.", "cancel"))
                else:
                    live.cancelled.set()
                return
            request = RoundRequest(key, actor, f"reroll of {action}", idempotency_key,
                                   reroll_of=int(arg) if arg.isdigit() else None)
            await self._round(request, view)
        finally:
            self.finished += 1
            self._signal()

    async def cancel(self, key: ChannelKey, actor: Actor, message_id: str) -> Notice:
        self.cancels.append(CancelCall(key, actor, message_id))
        self._signal()
        for live in self._live.values():
            if live.key == key and live.view.progress_message() == message_id:
                live.cancelled.set()
                return Notice("Cancelling.", ephemeral=True)
        return Notice("Reply to a round's progress message to cancel it.", ephemeral=True)

    async def round_id(self, key: ChannelKey, number: int) -> int | None:
        return number if 0 < number <= self._rounds else None

    async def is_round_message(self, key: ChannelKey, message_id: str) -> bool:
        return (key, message_id) in self.round_messages

    async def resume(self, platform: Platform, view_for: Callable[[Round], RoundView]) -> int:
        self.resumed.append(platform)
        self._signal()
        return 0

    def _duplicate(self, idem: str) -> bool:
        if self.dedupe and idem in self._keys:
            self.duplicates += 1
            return True
        self._keys.add(idem)
        return False

    async def _refuse(self, view: RoundView, refusal: Refusal) -> None:
        self.refused.append(refusal)
        await view.refuse(refusal)

    async def play(self, request: RoundRequest, view: RoundView) -> None:
        """Play the scripted round (for an `on_submit` that wraps it)."""
        await self._round(request, view)

    async def _round(self, request: RoundRequest, view: RoundView) -> None:
        if request.input_image is not None:
            try:
                self.fetched.append(await request.input_image.fetch(self.max_input_bytes))
            except UserFacingError as error:
                self.fetched.append(error)
                await self._refuse(view, Refusal(error.text(self.lang), error.reason, error.ephemeral))
                return
            except Exception as error:  # the core logs it and apologises
                self.fetched.append(error)
                await self._refuse(view, Refusal(say(self.lang, APOLOGY_ID), "error"))
                return
        if self.refusal is not None and self.refuse_early:
            await self._refuse(view, self.refusal)
            return
        self._rounds += 1
        number = self._rounds
        info = RoundInfo(number, number, self.lang, Button(say(self.lang, "button.cancel"), f"cancel:{number}"))
        self.infos.append(info)
        await view.begin(info)
        for position in self.positions:
            await view.queued(position)
        await view.started()
        for stage in self.stages:
            await view.stage(stage)
        for index in range(self.previews):
            await view.partial(Preview(png(16, 16, (index * 60 % 256, 0, 0)), index, number))
        live = _Live(number, request.key, view)
        self._live[number] = live
        self._signal()
        try:
            if await self._wait_gate(live):
                await self._refuse(view, Refusal(f"#{number} was cancelled.", "cancelled", ephemeral=False))
                return
        finally:
            del self._live[number]
        if self.refusal is not None:
            await self._refuse(view, self.refusal)
            return
        width, height = self.result_size
        transparent = self.result_transparent or request.options.background is Background.TRANSPARENT
        result = RoundResult(
            round_id=number, number=number, image=self.result_image, width=width, height=height,
            caption=self.caption.format(n=number, prompt=request.prompt), credits_left=9,
            buttons=(Button(say(self.lang, "button.reroll"), f"reroll:{number}"),), send_file=request.send_file,
            transparent=transparent,
        )
        self.results.append(result)
        try:
            ids = await view.deliver(result)
        except Exception as error:  # the core refunds; keep it visible to the test
            self.deliver_errors.append(error)
            raise
        self.round_messages.update((request.key, message_id) for message_id in ids)
        self.delivered.append(ids)

    async def _wait_gate(self, live: _Live) -> bool:
        """Wait for the gate (if any); True if the round was cancelled first."""
        if live.cancelled.is_set():
            return True
        if self.gate is None:
            return False
        gate = asyncio.ensure_future(self.gate.wait())
        cancelled = asyncio.ensure_future(live.cancelled.wait())
        try:
            await asyncio.wait({gate, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gate.cancel()
            cancelled.cancel()
        return live.cancelled.is_set()

    # -- DeskPort ---------------------------------------------------------------------------------------

    async def run(self, command: DeskCommand) -> Notice:
        self.desk_commands.append(command)
        self._signal()
        if self.dedupe and command.verb in MODERATOR_VERBS and command.idempotency_key in self._keys:
            self.duplicates += 1
            raise DuplicateRequest(command.idempotency_key)  # like the real desk: a redelivery does nothing
        needs_moderator = (
            command.verb in MODERATOR_VERBS
            or (command.verb is Verb.SHOW and command.target is not None)
            or (command.verb is Verb.LANGUAGE and command.language is not None)
        )
        if needs_moderator and not command.actor.is_moderator:
            return Notice(NotModerator("Only moderators can do that here.").message, ephemeral=True)
        if command.verb in MODERATOR_VERBS:
            self._keys.add(command.idempotency_key)
        return self.desk_notice(command)

    async def migrate_community(self, platform: Platform, old: str, new: str) -> None:
        self.migrations.append((platform, old, new))
        self._signal()

    async def seen(self, actor: Actor, community: str) -> None:
        self.seen_calls.append((actor, community))
        self._signal()

    def help_text(self, platform: Platform, lang: str) -> str:
        self.help_calls.append((platform, lang))
        return self.help if self.help is not None else f"help for {platform}"

    # -- NoticesPort ------------------------------------------------------------------------------------

    async def take(self, platform: Platform) -> list[PendingNotice]:
        return [n for n in self.notices if n.key.platform == platform and n.id not in self.sent_notices]

    async def sent(self, notice_id: int) -> None:
        self.sent_notices.append(notice_id)
        self._signal()

    # -- InboxPort --------------------------------------------------------------------------------------

    async def put(self, platform: Platform, items: list[tuple[str, str]]) -> None:
        if self.inbox_gate is not None:
            await self.inbox_gate.wait()
        if self.inbox_failures:
            self.inbox_failures -= 1
            raise sqlite3.OperationalError("database is locked")
        self.inbox_batches.append([key for key, _ in items])
        for key, payload in items:
            self.inbox.setdefault(key, payload)
        self._signal()

    async def done(self, platform: Platform, idem_key: str) -> None:
        self.inbox.pop(idem_key, None)
        self._signal()

    async def pending(self, platform: Platform) -> list[str]:
        return list(self.inbox.values())
