"""Running one round, from the reserve to the image in the chat (or a refund and a clear answer), and the
endings every round shares: refused, failed, cancelled, interrupted by a stop.

The provider call runs in a child task (`Live.work`, started in `core.generation`): Cancel stops that task,
not the round, so an image that arrives in the race is still delivered, and charged once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from core import generation
from core.errors import (
    APOLOGY_ID,
    BadInputImage,
    BudgetExhausted,
    ProviderTimeout,
    ProviderUnavailable,
    ResponseGone,
    UnknownRound,
    UserFacingError,
)
from core.events import Actor, InputImage, Platform, RoundRequest
from core.generation import Deps, Live, context
from core.guards import ProviderProbe, UserGuards
from core.intake import Plan
from core.outcomes import Button, Refusal, RoundInfo, RoundView
from core.people import People
from core.ports import GeneratedImage, ImageJob, ParentImage
from core.pricing import estimate_usd, estimated_usage
from core.progress import ProgressPump, quietly
from core.provider import pictures
from core.records import Balance, Facts, Reservation, Round, RoundState, day_of, next_reset
from core.texts import say

log = logging.getLogger(__name__)

CANCEL = "cancel"


@dataclass
class Shared:
    """What the round service's parts share: the rounds running in this process and its guards."""

    deps: Deps
    people: People
    worker: str
    guards: UserGuards
    probe: ProviderProbe = field(default_factory=ProviderProbe)
    accepting: bool = True
    salt: bytes = b""
    live: dict[int, Live] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    resumable: dict[Platform, list[Round]] = field(default_factory=dict)
    budget_alert_day: str | None = None
    decodes: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task the service owns (shutdown waits for it), kept referenced until it ends."""
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


class RoundRunner:
    def __init__(self, shared: Shared) -> None:
        self.s = shared
        self.deps = shared.deps

    # -- a new round ------------------------------------------------------------------------------------

    async def run(
        self, request: RoundRequest, plan: Plan, view: RoundView, lang: str, on_shown: Callable[[], None] | None = None
    ) -> None:
        deps, item = self.deps, plan.round
        live = Live(round=item, view=view, lang=lang, outer=asyncio.current_task(), on_shown=on_shown)
        self.s.live[item.id] = live
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
            async with asyncio.timeout(self.deadline_left(item)):
                generated = await self._call_provider(live, job, pump)
            await self._record_progress(live, view)
            parent_number = plan.parent.number if plan.parent else None
            await generation.deliver(deps, live, generated, pump, balance.left, parent_number, request.send_file)
        except TimeoutError:
            pump.cancel()
            await self._past_deadline(live)
        except UserFacingError as error:
            pump.cancel()
            await self.end(live, RoundState.FAILED if reserved else RoundState.REFUSED, error)
        except asyncio.CancelledError:
            pump.cancel()
            if live.cancelled_by is not None and live.phase is not RoundState.DELIVERED:
                await asyncio.shield(self.cancelled(live))
                task = asyncio.current_task()
                if task is not None and task.cancelling() and not self.s.accepting:
                    raise  # a shutdown as well: let it proceed
                while task is not None and task.cancelling():  # our own cancel, before the provider call
                    task.uncancel()
                return
            await asyncio.shield(self.stopped(live))
            raise
        except Exception:
            pump.cancel()
            log.exception("round %d failed unexpectedly", item.id, extra=context(item))
            await self.end(live, RoundState.FAILED, None)
        finally:
            self.s.live.pop(item.id, None)

    async def _call_provider(self, live: Live, job: ImageJob, pump: ProgressPump) -> GeneratedImage:
        """The provider call as a child task (Cancel stops it, not the round), behind the availability probe."""
        probe = self.s.probe
        if not probe.admit():
            assert probe.down is not None
            raise probe.down
        live.work = asyncio.create_task(generation.generate(self.deps, live, job, pump))
        try:
            generated = await live.work
        except ProviderUnavailable as error:
            probe.failed(error)
            log.error("the image provider is unavailable (%s); probing with one request at a time",
                      error.reason, extra=context(live.round))
            raise
        except BaseException:
            probe.released()
            raise
        probe.succeeded()
        return generated

    async def _reserve(self, item: Round) -> Balance:
        settings, now = self.deps.settings, self.deps.clock()
        reservation = Reservation(
            round_id=item.id,
            cost=item.spec.cost(settings.cost_table),
            default_daily=settings.daily_credits,
            now=now,
            budget_usd=settings.daily_budget_usd,
            est_usd=estimate_usd(estimated_usage(item.spec), settings.prices),
        )
        try:
            return await self.deps.store.reserve(reservation)
        except BudgetExhausted:
            if self.s.budget_alert_day != day_of(now):
                self.s.budget_alert_day = day_of(now)
                log.error("OPERATOR ALERT: the daily budget of $%.2f (EASEL_DAILY_BUDGET_USD) is reached; new "
                          "rounds are refused until %s UTC", settings.daily_budget_usd, f"{next_reset(now):%H:%M}")
            raise

    def deadline_left(self, item: Round) -> float:
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
        if request.inputs:
            limit = self.deps.settings.max_input_bytes
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
        async with self.s.decodes:  # downloads and decodes share one global cap
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
        safety = hmac.new(self.s.salt, f"{item.key.platform}:{item.user_id}".encode(), hashlib.sha256)
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

    # -- a round picked up after a restart --------------------------------------------------------------

    async def resume(self, item: Round, view: RoundView) -> None:
        """Deliver a background round picked up after a restart, charged once."""
        deps = self.deps
        live = Live(round=item, view=view, lang=item.lang, outer=asyncio.current_task(),
                    response_id=item.response_id, background=True)
        self.s.live[item.id] = live
        pump = ProgressPump(view, item.id)
        try:
            async with asyncio.timeout(self.deadline_left(item)):
                live.work = asyncio.create_task(generation.follow(deps, live, pump))
                generated = await live.work
            key = item.key
            balance = await deps.store.balance(
                key.platform, key.community, item.user_id, day_of(item.created_at), deps.settings.daily_credits
            )
            await generation.deliver(deps, live, generated, pump, balance.left, None, False)
        except ResponseGone:
            pump.cancel()
            gone = UserFacingError("round.expired", reason="expired", ephemeral=False, number=item.number)
            await self.end(live, RoundState.FAILED, gone)
        except TimeoutError:
            pump.cancel()
            await self._past_deadline(live)
        except UserFacingError as error:
            pump.cancel()
            await self.end(live, RoundState.FAILED, error)
        except asyncio.CancelledError:
            pump.cancel()
            if live.cancelled_by is not None:
                await asyncio.shield(self.cancelled(live))
                return
            raise  # shutdown: still open, the next start picks it up again
        except Exception:
            pump.cancel()
            log.exception("resumed round %d failed unexpectedly", item.id, extra=context(item))
            await self.end(live, RoundState.FAILED, None)
        finally:
            self.s.live.pop(item.id, None)

    # -- endings ----------------------------------------------------------------------------------------

    async def finish(self, item: Round, state: RoundState, reason: str) -> int:
        return await self.deps.store.finish(item.id, state, reason, self.deps.clock())

    async def end(self, live: Live, state: RoundState, error: UserFacingError | None) -> None:
        """Refund (once), record why, and tell the user. `error` None means an unexpected failure."""
        if live.phase is RoundState.DELIVERED:
            return  # the chat shows the image: charged, whatever failed afterwards
        await self.finish(live.round, state, error.reason if error is not None else "error")
        await self.refuse(live.view, None, error, live.lang)

    async def _past_deadline(self, live: Live) -> None:
        await generation.cancel_at_provider(self.deps.provider, live.response_id)
        minutes = int(self.deps.settings.round_deadline // 60)
        await self.end(live, RoundState.CANCELLED, ProviderTimeout("round.deadline", minutes=minutes))

    async def cancelled(self, live: Live) -> None:
        item = live.round
        refunded = await self.finish(item, RoundState.CANCELLED, "cancelled")
        self.deps.metrics.rounds.labels(item.key.platform.value, "cancelled").inc()
        text = say(live.lang, "round.cancelled_refunded" if refunded else "round.cancelled", number=item.number)
        await quietly(live.view.refuse(Refusal(text, "cancelled", ephemeral=False)), "refuse", item.id)

    async def stopped(self, live: Live) -> None:
        """Shutdown interrupted the round. A background round the provider holds stays open for the next
        start; anything else is refunded and its user told now."""
        item = live.round
        if live.detach or live.phase is RoundState.DELIVERED:
            log.info("round %d left to the provider's background mode; resumed at the next start", item.id)
            return
        with contextlib.suppress(Exception):
            await self.finish(item, RoundState.FAILED, "interrupted")
            error = UserFacingError("round.stopped_midway", reason="interrupted", ephemeral=False)
            await asyncio.wait_for(self.refuse(live.view, None, error, live.lang), timeout=2)

    async def refuse(self, view: RoundView, actor: Actor | None, error: UserFacingError | None, lang: str) -> None:
        if error is None:
            refusal = Refusal(say(lang, APOLOGY_ID), "error", ephemeral=False)
        else:
            if error.reason == "rate_limited" and actor is not None:
                user = (actor.platform.value, actor.user_id)
                if not self.s.guards.should_tell(user, error.reason):
                    return  # repeated refusals collapse into one message
            refusal = Refusal(error.text(lang), error.reason, error.ephemeral)
        platform = actor.platform.value if actor is not None else "any"
        self.deps.metrics.refusals.labels(platform, refusal.reason).inc()
        await quietly(view.refuse(refusal), "refuse", 0)
