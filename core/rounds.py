"""The round service: what adapters call to make images. A request is de-duplicated, planned (parent,
prompt, image spec), recorded, guarded (rate, per-user cap, credits), run (`core.generation`), and answered
with the image or a clear refusal. Cancel, shutdown and start-up recovery decide by the round's state."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace

from core import generation, words
from core.errors import (
    APOLOGY_ID,
    BadInputImage,
    BadRequest,
    BudgetExhausted,
    Busy,
    DuplicateRequest,
    ProviderTimeout,
    ProviderUnavailable,
    ResponseGone,
    UnknownRound,
    UserFacingError,
)
from core.events import Actor, ChannelKey, InputImage, Platform, RoundRequest
from core.generation import Deps, Live, context
from core.guards import ProviderProbe, UserGuards
from core.outcomes import Button, Notice, Refusal, RoundInfo, RoundView
from core.people import People
from core.ports import GeneratedImage, ImageJob, ParentImage
from core.pricing import estimate_usd, estimated_usage
from core.progress import ProgressPump, quietly
from core.provider import pictures
from core.records import Balance, Facts, NewRound, Reservation, Round, RoundKind, RoundState, day_of, next_reset
from core.spec import MAX_REFERENCES
from core.texts import say

log = logging.getLogger(__name__)

REROLL, CANCEL = "reroll", "cancel"
# Format characters that only ever confuse the model or the chat (bidirectional overrides and isolates,
# invisible separators); ZWJ/ZWNJ stay: Persian, Indic scripts and emoji sequences need them.
_KEEP_FORMAT = {"\u200c", "\u200d", "\ufe0f", "\ufe0e"}


# A view the adapter builds for a round picked up after a restart: it posts into the round's channel.
ViewFactory = Callable[[Round], RoundView]


@dataclass(frozen=True, slots=True)
class Plan:
    round: Round
    parent: Round | None
    refusal: UserFacingError | None = None


class RoundService:
    def __init__(self, deps: Deps, people: People, worker: str) -> None:
        self.deps = deps
        self.people = people
        self.worker = worker
        settings = deps.settings
        self.guards = UserGuards(settings.user_concurrency, settings.user_rate)
        self.probe = ProviderProbe()
        self.accepting = True
        self._salt = b""
        self._live: dict[int, Live] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._resumable: dict[Platform, list[Round]] = {}
        self._budget_alert_day: str | None = None
        self._decodes = asyncio.Semaphore(max(2, settings.provider_concurrency // 2))

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self, stale_after: float = 30.0) -> int:
        """Load the safety salt and take over rounds left open by a worker that is gone: background rounds
        the provider may still hold wait for their platform's adapter (`resume`); the rest are refunded and
        their users told. Returns how many rounds were taken over."""
        self._salt = (await self.deps.store.safety_salt()).encode()
        await self.deps.store.heartbeat(self.worker, self.deps.clock())
        return await self.adopt(stale_after, own=True)

    async def adopt(self, stale_after: float = 30.0, *, own: bool = False) -> int:
        """Take over open rounds of gone workers; with `own`, also this worker id's rounds from an earlier
        run (at start nothing runs here yet: a restart keeping its id, e.g. pid 1 in a container)."""
        earlier = await self.deps.store.open_rounds(owner=self.worker) if own else []
        adopted = earlier + await self.deps.store.adopt_rounds(self.worker, self.deps.clock(), stale_after)
        for item in adopted:
            if item.id in self._live:
                continue
            if item.background and item.response_id and self.deps.provider.background:
                self._resumable.setdefault(item.key.platform, []).append(item)
            else:
                await self._interrupted_while_away(item)
        if adopted:
            log.warning("took over %d rounds left open by a stopped worker", len(adopted))
        return len(adopted)

    async def _interrupted_while_away(self, item: Round) -> None:
        now = self.deps.clock()
        await self.deps.store.finish(item.id, RoundState.FAILED, "interrupted", now)
        text = say(item.lang, "round.interrupted", number=item.number, prompt=words.snippet(item.prompt, 80))
        await self.deps.store.add_notice(item.key, None, text, now, item.user_id)

    def pending_resumes(self, platform: Platform) -> list[Round]:
        return list(self._resumable.get(platform, ()))

    async def resume(self, platform: Platform, view_for: ViewFactory) -> int:
        """An adapter is connected: follow its platform's background rounds to their end. Returns how many."""
        items = self._resumable.pop(platform, [])
        for item in items:
            task = asyncio.create_task(self._resume_one(item, view_for(item)), name=f"easel-resume-{item.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(items)

    async def drain(self, grace: float) -> int:
        """Stop taking rounds. Background rounds the provider holds are left for the next start (nothing is
        refunded, nobody is told twice); queued rounds are refunded at once; rounds the provider runs in the
        foreground get `grace` seconds, then are refunded. Returns how many were interrupted."""
        self.accepting = False
        for live in list(self._live.values()):
            if live.outer is None:
                continue
            if live.detachable:
                live.detach = True
                live.outer.cancel()
            elif live.phase is RoundState.QUEUED:
                live.outer.cancel()
        running = {live.outer for live in self._live.values() if live.outer is not None and not live.outer.done()}
        running |= self._tasks
        if running:
            _, running = await asyncio.wait(running, timeout=grace)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=3)
        await self.deps.store.retire(self.worker)
        return len(running)

    @property
    def in_flight(self) -> int:
        return len(self._live)

    # -- requests ---------------------------------------------------------------------------------------

    async def submit(self, request: RoundRequest, view: RoundView) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._submit(request, view)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def press(self, action: str, key: ChannelKey, actor: Actor, idempotency_key: str, view: RoundView) -> None:
        verb, _, arg = action.partition(":")
        if verb not in (REROLL, CANCEL) or not arg.isdigit() or len(arg) > 18:
            await self._refuse(view, actor, UnknownRound("round.button_gone"), await self.people.language(actor, key))
            return
        if verb == CANCEL:
            try:
                notice = await self.cancel_round(int(arg), key, actor)
            except UserFacingError as error:
                await self._refuse(view, actor, error, await self.people.language(actor, key))
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
        lang = await self.people.language(actor, key)
        item = await self.deps.store.get_round(round_id)
        if item is None or (item.key.platform, item.key.community) != (key.platform, key.community):
            raise UnknownRound("round.button_gone")
        if actor.user_id != item.user_id and not self.people.is_moderator(actor):
            raise UnknownRound("round.cancel_not_yours", reason="not_yours")
        live = self._live.get(round_id)
        if not item.state.is_open or (live is not None and live.phase in (RoundState.DELIVERING, RoundState.DELIVERED)):
            return Notice(say(lang, "round.cancel_too_late"), ephemeral=True)
        if live is not None:
            # Running here: stop its provider call (or, before the call, the round itself); the round then
            # refunds and tells its channel. An image that arrives in the race is delivered instead.
            live.cancelled_by = actor
            if live.work is not None:
                stop = asyncio.create_task(generation.cancel_at_provider(self.deps.provider, live.response_id))
                self._tasks.add(stop)
                stop.add_done_callback(self._tasks.discard)
                live.work.cancel()
            elif live.outer is not None:
                live.outer.cancel()
            return None
        # Not running here (another worker's, or waiting to be resumed): stop it at the provider and end it.
        await generation.cancel_at_provider(self.deps.provider, item.response_id)
        refunded = await self.deps.store.finish(item.id, RoundState.CANCELLED, "cancelled", self.deps.clock())
        text = say(item.lang, "round.cancelled_refunded" if refunded else "round.cancelled", number=item.number)
        await self.deps.store.add_notice(item.key, item.progress_message, text, self.deps.clock(), item.user_id)
        return Notice(say(lang, "round.cancelled_refunded" if refunded else "round.cancelled", number=item.number))

    async def round_id(self, key: ChannelKey, number: int) -> int | None:
        found = await self.deps.store.round_by_number(key, number)
        return found.id if found else None

    async def is_round_message(self, key: ChannelKey, message_id: str) -> bool:
        return await self.deps.store.round_by_message(key, message_id) is not None

    # -- intake -----------------------------------------------------------------------------------------

    async def _submit(self, request: RoundRequest, view: RoundView) -> None:
        actor, key = request.actor, request.key
        user = (key.platform.value, actor.user_id)
        lang = await self.people.language(actor, key)
        source: int | None = None
        try:
            await self.people.seen(actor)
            if not self.accepting:
                raise Busy("round.shutting_down")
            self.people.require_open(key, actor)
            if not self.guards.rate_ok(user):
                raise Busy("round.too_fast", reason="rate_limited")
            prompt = self._clean_prompt(request)
            if request.reroll_of is not None:
                if not self.guards.start_reroll(user, request.reroll_of):
                    raise Busy("round.reroll_running", reason="reroll_running")
                source = request.reroll_of
            plan = await self._plan(request, prompt, lang)
        except DuplicateRequest:
            log.info("duplicate request %s ignored", request.idempotency_key)
            self._end_reroll(user, source)
            return
        except UserFacingError as error:
            self._end_reroll(user, source)
            await self._refuse(view, actor, error, lang)
            return
        try:
            if plan.refusal is not None:
                await self._refuse(view, actor, plan.refusal, lang)
                return
            if not self.guards.enter(user):
                busy = Busy("round.user_busy", count=self.guards.active(user))
                await self._finish(plan.round, RoundState.REFUSED, busy.reason)
                await self._refuse(view, actor, busy, lang)
                return
            try:
                await self._run(request, plan, view, lang)
            finally:
                self.guards.leave(user)
        finally:
            self._end_reroll(user, source)

    def _end_reroll(self, user: tuple[str, str], source: int | None) -> None:
        if source is not None:
            self.guards.end_reroll(user, source)

    def _clean_prompt(self, request: RoundRequest) -> str:
        prompt = "".join(
            ch
            for ch in request.prompt
            if ch in "\n\t" or ch in _KEEP_FORMAT or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co")
        ).strip()
        if request.reroll_of is not None:
            return prompt
        if len(request.inputs) > MAX_REFERENCES:
            raise BadRequest("round.too_many_images", count=MAX_REFERENCES)
        if not prompt:
            if request.input_image is not None or request.reply_to is not None or request.parent_round:
                raise BadRequest("round.empty_instruction")
            raise BadRequest(f"round.empty_prompt.{request.key.platform.value}")
        limit = self.deps.settings.max_prompt_chars
        if len(prompt) > limit:
            raise BadRequest("round.prompt_too_long", length=len(prompt), limit=limit)
        return prompt

    async def _plan(self, request: RoundRequest, prompt: str, lang: str) -> Plan:
        """Resolve the parent (or the rerolled round), decide the image spec, and record the round."""
        store, key = self.deps.store, request.key
        parent: Round | None = None
        refusal: UserFacingError | None = None
        kind = RoundKind.EDIT if request.input_image is not None else RoundKind.GENERATE
        spec = request.options.resolve(None, references=len(request.inputs))
        input_shas: tuple[str, ...] = ()
        if request.reroll_of is not None:
            kind = RoundKind.REROLL
            source = await store.get_round(request.reroll_of)
            if source is None or not _same_channel(source.key, key) or source.state is not RoundState.DELIVERED:
                refusal = UnknownRound("round.reroll_gone")
            elif source.prompt == words.FORGOTTEN:
                refusal = UnknownRound("round.reroll_forgotten")
            else:
                prompt, spec, input_shas = source.prompt, source.spec, source.input_shas
                parent = await store.get_round(source.parent_id) if source.parent_id else None
        elif request.reply_to is not None or request.parent_round is not None:
            kind = RoundKind.EDIT
            if request.parent_round is not None:
                parent = await store.get_round(request.parent_round)
            if parent is None and request.reply_to is not None:
                parent = await store.round_by_message(key, request.reply_to)
            if parent is not None and (
                not _same_channel(parent.key, key)
                or parent.state not in (RoundState.DELIVERING, RoundState.DELIVERED)
            ):
                parent = None
            if parent is None:
                refusal = UnknownRound(f"round.parent_unknown.{key.platform.value}")
            else:
                spec = request.options.resolve(parent.spec, references=len(request.inputs))
        new = NewRound(
            idem_key=request.idempotency_key,
            key=key,
            user_id=request.actor.user_id,
            user_name=request.actor.display_name,
            parent_id=parent.id if parent else None,
            kind=kind,
            prompt=prompt,
            spec=spec,
            input_shas=input_shas,
            state=RoundState.REFUSED if refusal is not None else RoundState.REQUESTED,
            reason=refusal.reason if refusal is not None else None,
            owner=self.worker,
            lang=lang,
        )
        claimed = await store.create_round(new, self.deps.clock())
        return Plan(round=claimed, parent=parent, refusal=refusal)

    # -- running ----------------------------------------------------------------------------------------

    async def _run(self, request: RoundRequest, plan: Plan, view: RoundView, lang: str) -> None:
        deps, item = self.deps, plan.round
        live = Live(round=item, view=view, lang=lang, outer=asyncio.current_task())
        self._live[item.id] = live
        pump = ProgressPump(view, item.id)
        reserved = False
        try:
            cancel = Button(say(lang, "button.cancel"), f"{CANCEL}:{item.id}")
            await quietly(view.begin(RoundInfo(item.id, item.number, lang, cancel)), "begin", item.id)
            balance = await self._reserve(item)
            reserved = True
            live.round = item = replace(item, cost=item.spec.cost(deps.settings.cost_table))
            inputs = await self._inputs(request, item)
            job = await self._job(item, plan.parent, inputs)
            async with asyncio.timeout(self._deadline_left(item)):
                generated = await self._call_provider(live, job, pump)
            await self._record_progress(live, view)
            await generation.deliver(
                deps, live, generated, pump, balance.left, plan.parent.number if plan.parent else None,
                request.send_file,
            )
        except TimeoutError:
            pump.cancel()
            await generation.cancel_at_provider(deps.provider, live.response_id)
            await self._end(live, RoundState.CANCELLED, ProviderTimeout("round.deadline",
                            minutes=int(deps.settings.round_deadline // 60)), reserved)
        except UserFacingError as error:
            pump.cancel()
            await self._end(live, RoundState.REFUSED if not reserved else RoundState.FAILED, error, reserved)
        except asyncio.CancelledError:
            pump.cancel()
            if live.cancelled_by is not None and live.phase is not RoundState.DELIVERED:
                await asyncio.shield(self._cancelled(live))
                task = asyncio.current_task()
                if task is not None and task.cancelling() and not self.accepting:
                    raise  # shutdown as well: let it proceed
                if task is not None:
                    while task.cancelling():  # our own cancel of a round before its provider call: handled
                        task.uncancel()
                return
            await asyncio.shield(self._stopped(live, reserved))
            raise
        except Exception:
            pump.cancel()
            log.exception("round %d failed unexpectedly", item.id, extra=context(item))
            await self._end(live, RoundState.FAILED, None, reserved)
        finally:
            self._live.pop(item.id, None)

    async def _call_provider(self, live: Live, job: ImageJob, pump: ProgressPump) -> GeneratedImage:
        """The provider call as a child task (Cancel stops it, not the round), behind the availability probe."""
        if not self.probe.admit():
            assert self.probe.down is not None
            raise self.probe.down
        live.work = asyncio.create_task(generation.generate(self.deps, live, job, pump))
        try:
            generated = await live.work
        except ProviderUnavailable as error:
            self.probe.failed(error)
            log.error("the image provider is unavailable (%s); probing with one request at a time",
                      error.reason, extra=context(live.round))
            raise
        except BaseException:
            self.probe.released()
            raise
        self.probe.succeeded()
        return generated

    async def _reserve(self, item: Round) -> Balance:
        settings, now = self.deps.settings, self.deps.clock()
        est = estimate_usd(estimated_usage(item.spec), settings.prices)
        reservation = Reservation(
            round_id=item.id,
            cost=item.spec.cost(settings.cost_table),
            default_daily=settings.daily_credits,
            now=now,
            budget_usd=settings.daily_budget_usd,
            est_usd=est,
        )
        try:
            return await self.deps.store.reserve(reservation)
        except BudgetExhausted:
            if self._budget_alert_day != day_of(now):
                self._budget_alert_day = day_of(now)
                log.error("OPERATOR ALERT: the daily budget of $%.2f (EASEL_DAILY_BUDGET_USD) is reached; new "
                          "rounds are refused until %s UTC", settings.daily_budget_usd, f"{next_reset(now):%H:%M}")
            raise

    def _deadline_left(self, item: Round) -> float:
        elapsed = (self.deps.clock() - item.created_at).total_seconds()
        return max(1.0, self.deps.settings.round_deadline - elapsed)

    async def _record_progress(self, live: Live, view: RoundView) -> None:
        message = view.progress_message()
        if message is not None and message != live.round.progress_message:
            # Recorded before the result replaces it, so `/cancel` and replies resolve to this round.
            await self.deps.store.attach_messages(live.round.id, live.round.key, [message])

    async def _inputs(self, request: RoundRequest, item: Round) -> tuple[bytes, ...]:
        """Input images: size-checked before download, decoded and normalised off the loop under a global
        cap, and stored only now that the credits are reserved."""
        settings = self.deps.settings
        if request.inputs:
            limit = settings.max_input_bytes
            images = [await self._fetch(image, limit) for image in request.inputs]
            shas = [await asyncio.to_thread(self.deps.images.put, data, "image/png") for data in images]
            await self.deps.store.record_facts(item.id, Facts(input_shas=tuple(shas)), self.deps.clock())
            return tuple(images)
        stored: list[bytes] = []
        for sha in item.input_shas:  # a reroll of an edit reuses the stored inputs
            data = await asyncio.to_thread(self.deps.images.get, sha, "image/png")
            if data is None:
                raise UnknownRound("round.input_gone")
            stored.append(data)
        return tuple(stored)

    async def _fetch(self, image: InputImage, limit: int) -> bytes:
        if image.declared_bytes is not None and image.declared_bytes > limit:
            raise BadInputImage("round.input_too_large", mb=f"{image.declared_bytes / 1e6:.1f}", limit=limit // 10**6)
        async with self._decodes:
            data = await image.fetch(limit)
            png, _, _ = await asyncio.to_thread(
                pictures.validate_input, data, max_bytes=limit, max_pixels=self.deps.settings.max_input_pixels
            )
        return png

    async def _job(self, item: Round, parent: Round | None, inputs: tuple[bytes, ...]) -> ImageJob:
        parent_image = None
        if parent is not None:
            image = None
            if parent.image_sha:
                image = await asyncio.to_thread(self.deps.images.get, parent.image_sha, parent.mime or "image/png")
            parent_image = ParentImage(
                image=image, mime=parent.mime or "image/png", response_id=parent.response_id,
                image_call_id=parent.image_call_id,
            )
        settings = self.deps.settings
        safety = hmac.new(self._salt, f"{item.key.platform}:{item.user_id}".encode(), hashlib.sha256)
        model = settings.transparent_model if item.spec.background.value == "transparent" else None
        return ImageJob(
            prompt=item.prompt,
            params=item.spec.provider_params(model or settings.image_model),
            parent=parent_image,
            inputs=inputs,
            safety_id=safety.hexdigest()[:32],
            round_id=item.id,
            model=model,
        )

    async def _resume_one(self, item: Round, view: RoundView) -> None:
        """Deliver a background round picked up after a restart, charged once."""
        deps = self.deps
        live = Live(round=item, view=view, lang=item.lang, outer=asyncio.current_task(),
                    response_id=item.response_id, background=True)
        self._live[item.id] = live
        pump = ProgressPump(view, item.id)
        try:
            async with asyncio.timeout(self._deadline_left(item)):
                live.work = asyncio.create_task(generation.follow(deps, live, pump))
                generated = await live.work
            key = item.key
            balance = await deps.store.balance(
                key.platform, key.community, item.user_id, day_of(item.created_at), deps.settings.daily_credits
            )
            await generation.deliver(deps, live, generated, pump, balance.left, None, False)
        except ResponseGone:
            pump.cancel()
            await self._end(live, RoundState.FAILED, UserFacingError("round.expired", reason="expired",
                            ephemeral=False, number=item.number), True)
        except TimeoutError:
            pump.cancel()
            await generation.cancel_at_provider(deps.provider, live.response_id)
            await self._end(live, RoundState.CANCELLED, ProviderTimeout("round.deadline",
                            minutes=int(deps.settings.round_deadline // 60)), True)
        except UserFacingError as error:
            pump.cancel()
            await self._end(live, RoundState.FAILED, error, True)
        except asyncio.CancelledError:
            pump.cancel()
            if live.cancelled_by is not None:
                await asyncio.shield(self._cancelled(live))
                return
            raise  # shutdown: still open, the next start picks it up again
        except Exception:
            pump.cancel()
            log.exception("resumed round %d failed unexpectedly", item.id, extra=context(item))
            await self._end(live, RoundState.FAILED, None, True)
        finally:
            self._live.pop(item.id, None)

    # -- endings ----------------------------------------------------------------------------------------

    async def _finish(self, item: Round, state: RoundState, reason: str) -> int:
        return await self.deps.store.finish(item.id, state, reason, self.deps.clock())

    async def _end(self, live: Live, state: RoundState, error: UserFacingError | None, reserved: bool) -> None:
        """Refund (once), record why, and tell the user. `error` None means an unexpected failure."""
        item = live.round
        if live.phase is RoundState.DELIVERED:
            return  # the chat shows the image: charged, whatever failed afterwards
        await self._finish(item, state, error.reason if error is not None else "error")
        await self._refuse(live.view, None, error, live.lang)

    async def _cancelled(self, live: Live) -> None:
        item = live.round
        refunded = await self._finish(item, RoundState.CANCELLED, "cancelled")
        self.deps.metrics.rounds.labels(item.key.platform.value, "cancelled").inc()
        text = say(live.lang, "round.cancelled_refunded" if refunded else "round.cancelled", number=item.number)
        await quietly(live.view.refuse(Refusal(text, "cancelled", ephemeral=False)), "refuse", item.id)

    async def _stopped(self, live: Live, reserved: bool) -> None:
        """Shutdown interrupted the round. A background round the provider holds stays open for the next
        start; anything else is refunded and its user told now."""
        item = live.round
        if live.detach or live.phase is RoundState.DELIVERED:
            log.info("round %d left to the provider's background mode; resumed at the next start", item.id)
            return
        with contextlib.suppress(Exception):
            await self._finish(item, RoundState.FAILED, "interrupted")
            error = UserFacingError("round.stopped_midway", reason="interrupted", ephemeral=False)
            await asyncio.wait_for(self._refuse(live.view, None, error, live.lang), timeout=2)

    async def _refuse(self, view: RoundView, actor: Actor | None, error: UserFacingError | None, lang: str) -> None:
        if error is None:
            refusal = Refusal(say(lang, APOLOGY_ID), "error", ephemeral=False)
        else:
            if error.reason == "rate_limited" and actor is not None:
                user = (actor.platform.value, actor.user_id)
                if not self.guards.should_tell(user, error.reason):
                    return  # repeated refusals collapse into one message
            refusal = Refusal(error.text(lang), error.reason, error.ephemeral)
        platform = actor.platform.value if actor is not None else "any"
        self.deps.metrics.refusals.labels(platform, refusal.reason).inc()
        await quietly(view.refuse(refusal), "refuse", 0)


def _same_channel(a: ChannelKey, b: ChannelKey) -> bool:
    return (a.platform, a.community, a.channel) == (b.platform, b.community, b.channel)

