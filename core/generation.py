"""One round's run, from reserved credits to a delivered image, through explicit persisted states:

    requested -> (reserve) queued -> (provider slot) running -> (image here) delivering -> delivered
                                   \\-> failed | cancelled (refunded, the user told)

The provider call runs in a child task (`Live.work`): Cancel stops that task, not the round, so an image
that arrives in the race is still delivered (and charged once). Once the chat shows the image nothing
refunds it: failures after delivery are logged and the commit is retried."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core import words
from core.errors import Busy
from core.events import Actor
from core.metrics import Metrics
from core.outcomes import Button, Preview, RoundResult, RoundView, Stage
from core.ports import (
    Clock,
    GeneratedImage,
    ImageJob,
    ImageProvider,
    ImageStore,
    ProviderEvents,
    Slots,
    Store,
    UserCap,
)
from core.pricing import estimate_usd, estimated_usage
from core.progress import ProgressPump
from core.provider import pictures
from core.records import Facts, Round, RoundState
from core.settings import Settings
from core.slots import QueueFull

log = logging.getLogger(__name__)

SEQ_WRITE_INTERVAL = 2.0  # seconds between writes of a stream's sequence number (resume point)


@dataclass
class Live:
    """A round running in this process: what Cancel and shutdown need to know."""

    round: Round
    view: RoundView
    lang: str
    outer: asyncio.Task[object] | None = None
    work: asyncio.Task[GeneratedImage] | None = None
    phase: RoundState = RoundState.QUEUED
    response_id: str | None = None
    background: bool = False
    cancelled_by: Actor | None = None
    detach: bool = False  # shutdown: leave a background round to the next start
    started: float = field(default_factory=time.monotonic)
    on_shown: Callable[[], None] | None = None  # the image is in the chat: the user's cap counts it no more
    slot_held: float | None = None  # seconds this round held a provider slot (logged at delivery)

    def shown(self) -> None:
        self.phase = RoundState.DELIVERED
        if self.on_shown is not None:
            self.on_shown()

    @property
    def detachable(self) -> bool:
        return self.background and self.response_id is not None and self.phase is RoundState.RUNNING


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    store: Store
    provider: ImageProvider
    images: ImageStore
    metrics: Metrics
    clock: Clock
    slots: Slots
    caps: UserCap


class Events(ProviderEvents):
    """The provider's reports, turned into durable facts (resume point) and progress on the view."""

    def __init__(self, deps: Deps, live: Live, pump: ProgressPump) -> None:
        self.deps, self.live, self.pump = deps, live, pump
        self._stage: str | None = None
        self._seq_written = 0.0
        self._seq_task: asyncio.Task[None] | None = None

    async def accepted(self, response_id: str, background: bool) -> None:
        self.live.response_id, self.live.background = response_id, background
        # Durable before anything else: after a crash this id is how the round is found again.
        facts = Facts(response_id=response_id, background=background)
        await self.deps.store.record_facts(self.live.round.id, facts, self.deps.clock())

    async def progressed(self, seq: int, stage: str) -> None:
        if stage != self._stage:
            self._stage = stage
            self.pump.stage(Stage.DRAWING if stage == "drawing" else Stage.THINKING)
        now = time.monotonic()
        busy = self._seq_task is not None and not self._seq_task.done()
        if self.live.background and not busy and now - self._seq_written >= SEQ_WRITE_INTERVAL:
            self._seq_written = now
            self._seq_task = asyncio.create_task(self._write_seq(seq))

    async def _write_seq(self, seq: int) -> None:
        try:
            await self.deps.store.record_facts(self.live.round.id, Facts(stream_seq=seq), self.deps.clock())
        except Exception:  # a lost resume point only costs a replay of events
            log.warning("could not record the stream position of round %d", self.live.round.id, exc_info=True)

    async def partial(self, image: bytes, index: int) -> None:
        self.pump.partial(Preview(image=image, index=index, round_id=self.live.round.id))


def context(item: Round) -> dict[str, object]:
    """Fields the log formatter shows on every line about a round."""
    return {"platform": item.key.platform.value, "community": item.key.community, "round_id": item.id}


async def generate(deps: Deps, live: Live, job: ImageJob, pump: ProgressPump) -> GeneratedImage:
    """Wait for a provider slot (the queue position is reported without waiting on the chat), move the round
    to `running`, call the provider; the slot is released the moment the provider answers."""
    item = live.round
    deps.metrics.queue_depth.inc()
    try:
        await deps.slots.acquire(pump.queued)
    except QueueFull:
        raise Busy("round.queue_full", ephemeral=False) from None
    finally:
        deps.metrics.queue_depth.dec()
    deps.metrics.in_flight.inc()
    started = time.monotonic()
    try:
        live.phase = RoundState.RUNNING
        await deps.store.transition(item.id, RoundState.RUNNING, deps.clock())
        pump.started()
        pump.stage(Stage.THINKING)
        return await deps.provider.create(job, Events(deps, live, pump))
    finally:
        deps.slots.release()
        live.slot_held = time.monotonic() - started
        deps.metrics.in_flight.dec()
        deps.metrics.provider_latency.labels(deps.settings.image_api).observe(live.slot_held)


async def follow(deps: Deps, live: Live, pump: ProgressPump) -> GeneratedImage:
    """A background round picked up after a restart: follow the provider's response to its end."""
    assert live.response_id is not None
    live.phase = RoundState.RUNNING
    pump.started()
    pump.stage(Stage.THINKING)
    return await deps.provider.resume(live.response_id, live.round.stream_seq, Events(deps, live, pump))


async def deliver(
    deps: Deps,
    live: Live,
    generated: GeneratedImage,
    pump: ProgressPump,
    left: int,
    parent_number: int | None,
    send_file: bool,
) -> None:
    """Show the image, then commit. If the upload fails the image never reached the chat: refunded by the
    caller. Once `view.deliver` returns, the charge stands whatever happens next."""
    item = live.round
    live.phase = RoundState.DELIVERING
    width, height = pictures.image_size(generated.image)  # reads the header only
    usage = generated.usage or estimated_usage(item.spec)
    facts = Facts(
        mime=generated.mime,
        width=width,
        height=height,
        response_id=generated.response_id,
        image_call_id=generated.image_call_id,
        revised_prompt=generated.revised_prompt,
        request_id=generated.request_id,
        text_tokens_in=usage.text_input_tokens,
        image_tokens_in=usage.image_input_tokens,
        image_tokens_out=usage.image_output_tokens,
        host_tokens_in=usage.host_input_tokens,
        host_tokens_out=usage.host_output_tokens,
        est_usd=estimate_usd(usage, deps.settings.prices),
    )
    await deps.store.transition(item.id, RoundState.DELIVERING, deps.clock(), facts)
    await pump.close()
    # The image store's write (hash + fsync) runs alongside the upload; both finish before the commit.
    stored = asyncio.create_task(asyncio.to_thread(deps.images.put, generated.image, generated.mime))
    result = RoundResult(
        round_id=item.id,
        number=item.number,
        image=generated.image,
        mime=generated.mime,
        width=width,
        height=height,
        caption=words.caption(live.lang, item, left, parent_number, deps.settings.image_model),
        credits_left=left,
        revised_prompt=generated.revised_prompt,
        buttons=(Button(words.say(live.lang, "button.reroll"), f"reroll:{item.id}"),),
        send_file=send_file,
        transparent=item.spec.background.value == "transparent",
    )
    try:
        message_ids = await live.view.deliver(result)
    except BaseException:
        stored.cancel()
        raise
    live.shown()
    await asyncio.shield(_commit(deps, item, message_ids, stored, facts, live.slot_held))


async def _commit(
    deps: Deps, item: Round, message_ids: list[str], stored: asyncio.Task[str], facts: Facts, held: float | None
) -> None:
    """After the chat shows the image: record it as delivered, retrying; never refund."""
    sha: str | None = None
    try:
        sha = await stored
    except Exception:  # the chat has the image; only later edits from the cached copy are lost
        log.exception("round %d: the image could not be stored; it stays delivered and charged", item.id)
    done = Facts(image_sha=sha)
    for attempt in range(5):
        try:
            await deps.store.deliver(item.id, item.key, message_ids, done, deps.clock())
            break
        except Exception:
            log.exception("round %d: recording the delivery failed (attempt %d)", item.id, attempt + 1)
            await asyncio.sleep(0.2 * 2**attempt)
    cost = item.cost
    deps.metrics.rounds.labels(item.key.platform.value, "delivered").inc()
    deps.metrics.credits_spent.labels(item.key.platform.value).inc(cost)
    # The slot's hold against the provider's own time shows whether Easel keeps slots longer than the call.
    slot = "" if held is None else f", provider slot held {held * 1000:.0f} ms"
    log.info("round %d delivered (%d credits, provider request %s%s)", item.id, cost, facts.request_id, slot,
             extra=context(item))


async def cancel_at_provider(provider: ImageProvider, response_id: str | None) -> None:
    if response_id is None or not provider.background:
        return
    with contextlib.suppress(Exception):
        await provider.cancel(response_id)
