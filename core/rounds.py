"""The round service: what adapters call to make images. A request is de-duplicated and recorded
(`core.intake`), guarded (shutdown, allowed communities, rate, per-user cap, one reroll at a time), run
(`core.running`, `core.generation`) and answered with the image or a clear refusal. Cancel, shutdown and
start-up recovery (`core.recovery`) decide by the round's persisted state."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from core import generation, intake
from core.errors import Busy, DuplicateRequest, UnknownRound, UserFacingError
from core.events import Actor, ChannelKey, Platform, RoundRequest
from core.generation import Deps
from core.guards import UserGuards
from core.intake import Plan
from core.outcomes import Notice, Refusal, RoundView
from core.people import People
from core.progress import quietly
from core.records import RoundState
from core.recovery import Recovery, ViewFactory
from core.running import CANCEL, RoundRunner, Shared
from core.texts import say

log = logging.getLogger(__name__)

REROLL = "reroll"

__all__ = ["CANCEL", "REROLL", "RoundService", "ViewFactory"]


class RoundService:
    def __init__(self, deps: Deps, people: People, worker: str) -> None:
        settings = deps.settings
        self.shared = Shared(
            deps=deps,
            people=people,
            worker=worker,
            guards=UserGuards(settings.user_rate),
            decodes=asyncio.Semaphore(max(2, settings.provider_concurrency // 2)),
        )
        self.runner = RoundRunner(self.shared)
        self.recovery = Recovery(self.shared, self.runner)

    @property
    def deps(self) -> Deps:
        return self.shared.deps

    @property
    def people(self) -> People:
        return self.shared.people

    @property
    def _tasks(self) -> set[asyncio.Task[Any]]:  # the adapters' tests wait for these to settle
        return self.shared.tasks

    @property
    def in_flight(self) -> int:
        return len(self.shared.live)

    # -- lifecycle (core.recovery) ----------------------------------------------------------------------

    async def start(self, stale_after: float = 30.0) -> int:
        return await self.recovery.start(stale_after)

    async def adopt(self, stale_after: float = 30.0) -> int:
        return await self.recovery.adopt(stale_after)

    async def resume(self, platform: Platform, view_for: ViewFactory) -> int:
        return self.recovery.resume(platform, view_for)

    async def drain(self, grace: float) -> int:
        return await self.recovery.drain(grace)

    # -- requests ---------------------------------------------------------------------------------------

    async def submit(self, request: RoundRequest, view: RoundView) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.shared.tasks.add(task)
        try:
            await self._submit(request, view)
        finally:
            if task is not None:
                self.shared.tasks.discard(task)

    async def press(self, action: str, key: ChannelKey, actor: Actor, idempotency_key: str, view: RoundView) -> None:
        """A button: `reroll:N` (a new image for round N's prompt, charged to the presser) or `cancel:N`."""
        verb, _, arg = action.partition(":")
        if verb not in (REROLL, CANCEL) or not arg.isdigit() or len(arg) > 18:
            lang = await self.people.language(actor, key)
            await self.runner.refuse(view, actor, UnknownRound("round.button_gone"), lang)
            return
        if verb == CANCEL:
            try:
                notice = await self.cancel_round(int(arg), key, actor)
            except UserFacingError as error:
                await self.runner.refuse(view, actor, error, await self.people.language(actor, key))
                return
            if notice is not None:
                await quietly(view.refuse(Refusal(notice.text, "cancel", ephemeral=True)), "refuse", int(arg))
            return
        request = RoundRequest(key=key, actor=actor, prompt="", idempotency_key=idempotency_key, reroll_of=int(arg))
        await self.submit(request, view)

    async def cancel(self, key: ChannelKey, actor: Actor, message_id: str) -> Notice:
        """Telegram `/cancel` replying to a progress message."""
        lang = await self.people.language(actor, key)
        item = await self.deps.store.round_by_message(key, message_id)
        if item is None:
            return Notice(say(lang, "round.cancel_which"), ephemeral=True)
        notice = await self.cancel_round(item.id, key, actor)
        return notice or Notice(say(lang, "round.cancel_requested"), ephemeral=True)

    async def cancel_round(self, round_id: int, key: ChannelKey, actor: Actor) -> Notice | None:
        """Cancel a queued or running round: for its asker and moderators. Returns a notice for the presser
        when there is nothing to cancel; otherwise the round itself tells its channel it was cancelled."""
        deps = self.deps
        lang = await self.people.language(actor, key)
        item = await deps.store.get_round(round_id)
        if item is None or (item.key.platform, item.key.community) != (key.platform, key.community):
            raise UnknownRound("round.button_gone")
        if actor.user_id != item.user_id and not self.people.is_moderator(actor):
            raise UnknownRound("round.cancel_not_yours", reason="not_yours")
        live = self.shared.live.get(round_id)
        if not item.state.is_open or (live is not None and live.phase in (RoundState.DELIVERING, RoundState.DELIVERED)):
            return Notice(say(lang, "round.cancel_too_late"), ephemeral=True)
        if live is not None:
            # Running here: stop its provider call (or, before the call, the round itself); the round then
            # refunds and tells its channel. An image that arrives in the race is delivered instead.
            live.cancelled_by = actor
            if live.work is not None:
                self.shared.spawn(generation.cancel_at_provider(deps.provider, live.response_id), "easel-cancel")
                live.work.cancel()
            elif live.outer is not None:
                live.outer.cancel()
            return None
        # Not running here (another worker's, or waiting to be resumed): stop it at the provider and end it.
        await generation.cancel_at_provider(deps.provider, item.response_id)
        refunded = await deps.store.finish(item.id, RoundState.CANCELLED, "cancelled", deps.clock())
        words_id = "round.cancelled_refunded" if refunded else "round.cancelled"
        await deps.store.add_notice(
            item.key, item.progress_message, say(item.lang, words_id, number=item.number), deps.clock(), item.user_id
        )
        return Notice(say(lang, words_id, number=item.number))

    async def round_id(self, key: ChannelKey, number: int) -> int | None:
        found = await self.deps.store.round_by_number(key, number)
        return found.id if found else None

    async def is_round_message(self, key: ChannelKey, message_id: str) -> bool:
        return await self.deps.store.round_by_message(key, message_id) is not None

    # -- intake -----------------------------------------------------------------------------------------

    async def _submit(self, request: RoundRequest, view: RoundView) -> None:
        actor, key, guards, caps = request.actor, request.key, self.shared.guards, self.deps.caps
        user = (key.platform.value, actor.user_id)
        lang = await self.people.language(actor, key)
        source: int | None = None
        try:
            plan = await self._admit(request, user, lang)
            source = request.reroll_of
        except DuplicateRequest:
            log.info("duplicate request %s ignored", request.idempotency_key)
            return
        except UserFacingError as error:
            await self.runner.refuse(view, actor, error, lang)
            return
        try:
            if plan.refusal is not None:
                await self.runner.refuse(view, actor, plan.refusal, lang)
                return
            try:
                entered = await caps.enter(user, plan.round.id)
            except Exception:  # the shared count is out of reach: the round never started, so it costs nothing
                log.exception("round %d: the per-user cap could not be checked", plan.round.id)
                await self.runner.finish(plan.round, RoundState.FAILED, "error")
                await self.runner.refuse(view, actor, None, lang)
                return
            if not entered:
                busy = Busy("round.user_busy", count=caps.active(user))
                await self.runner.finish(plan.round, RoundState.REFUSED, busy.reason)
                await self.runner.refuse(view, actor, busy, lang)
                return
            left = False

            def leave() -> None:  # once: when the image is in the chat, or when the round ends otherwise
                nonlocal left
                if not left:
                    left = True
                    caps.leave(user)

            try:
                await self.runner.run(request, plan, view, lang, on_shown=leave)
            finally:
                leave()
        finally:
            if source is not None:
                guards.end_reroll(user, source)

    async def _admit(self, request: RoundRequest, user: tuple[str, str], lang: str) -> Plan:
        """The guards in front of a round, then its record. A reroll holds its slot (one at a time per user
        and round) from here; on any refusal here the slot is given back."""
        s = self.shared
        await self.people.seen(request.actor)
        if not s.accepting:
            raise Busy("round.shutting_down")
        self.people.require_open(request.key, request.actor)
        if not s.guards.rate_ok(user):
            raise Busy("round.too_fast", reason="rate_limited")
        prompt = intake.clean_prompt(request, self.deps.settings.max_prompt_chars)
        if request.reroll_of is not None and not s.guards.start_reroll(user, request.reroll_of):
            raise Busy("round.reroll_running", reason="reroll_running")
        try:
            return await intake.plan(self.deps.store, self.deps.clock, request, prompt, lang, s.worker)
        except BaseException:
            if request.reroll_of is not None:
                s.guards.end_reroll(user, request.reroll_of)
            raise
