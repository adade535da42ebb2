"""The studio: the one service adapters call. It runs a round from request to delivered image:

    dedupe (idempotency key) -> plan (parent, prompt, size) -> per-user cap -> input check (Pillow)
    -> reserve credits -> wait for a provider slot (queue position) -> provider call (partials)
    -> store image -> deliver through the adapter's view -> commit  |  refund on any failure

Quotas and moderation live in `QuotaDesk`, which the studio extends; wording lives in `core.texts`."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import sqlite3
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from core import inbox, quotas, rounds, texts
from core.desk import QuotaDesk, utcnow
from core.errors import (
    GENERIC_APOLOGY,
    BadRequest,
    Busy,
    DuplicateRequest,
    ProviderTimeout,
    ProviderUnavailable,
    UnknownRound,
    UserFacingError,
)
from core.events import Actor, ChannelKey, Platform, Quality, RoundRequest, Size
from core.images import GeneratedImage, ImageJob, ImageProvider, ParentImage
from core.metrics import Metrics
from core.outcomes import Button, Preview, Refusal, RoundResult, RoundView
from core.pricing import estimate_usd, estimated_usage
from core.progress import ProgressPump, quietly
from core.provider import pictures
from core.provider.cache import ImageCache
from core.rounds import Round
from core.settings import SIZES, Settings
from core.slots import FairSlots, QueueFull
from core.store.sqlite import Store

log = logging.getLogger(__name__)

REROLL = "reroll"
UNAVAILABLE_PAUSE = 60.0  # seconds new requests skip the provider after it said "unavailable"


@dataclass(frozen=True, slots=True)
class PendingNotice:
    id: int
    key: ChannelKey
    reply_to: str | None
    text: str


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a claimed round will do; `refusal` set means it was recorded as refused."""

    round: Round
    parent: Round | None
    refusal: UserFacingError | None = None


class Studio(QuotaDesk):
    def __init__(
        self,
        settings: Settings,
        store: Store,
        provider: ImageProvider,
        cache: ImageCache,
        metrics: Metrics,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(settings, store, clock)
        self.provider = provider
        self.cache = cache
        self.metrics = metrics
        self.slots = FairSlots(settings.provider_concurrency, settings.queue_limit)
        self.accepting = True
        self._per_user: Counter[tuple[str, str]] = Counter()
        self._running: set[asyncio.Task[object]] = set()
        self._salt = b""
        # After "billing exhausted" or "bad key" the provider will refuse everyone for a while: answer at once
        # instead of calling it (and reserving credits) for every request until the operator acts.
        self._unavailable: ProviderUnavailable | None = None
        self._unavailable_until = 0.0

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> int:
        """Load the safety salt, refund rounds a crash left unfinished (queueing notices for their users),
        and prune the image cache. Returns how many rounds were recovered."""
        salt = await self.store.read(
            lambda c: c.execute("SELECT value FROM meta WHERE key = 'safety_salt'").fetchone()[0]
        )
        self._salt = str(salt).encode()
        recovered = await self.store.write(self._recover)
        if recovered:
            log.warning("refunded %d rounds left unfinished by the last run; their users will be told", recovered)
        await asyncio.to_thread(self.cache.prune)
        return recovered

    def _recover(self, conn: sqlite3.Connection) -> int:
        now = self.clock()
        unfinished = rounds.open_rounds(conn)
        for item in unfinished:
            quotas.refund(conn, item.id, now)
            rounds.update(conn, item.id, now, status="failed", reason="interrupted")
            text = texts.INTERRUPTED.format(number=item.number, prompt=texts.snippet(item.prompt, 80))
            _add_notice(conn, item.key, None, text, now)
        return len(unfinished)

    async def drain(self, grace: float) -> int:
        """Stop taking rounds, let running ones finish for `grace` seconds, cancel (refund) the rest.
        Returns how many were cancelled."""
        self.accepting = False
        running = set(self._running)
        if running:
            _, running = await asyncio.wait(running, timeout=grace)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=10)
        return len(running)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    # -- rounds -----------------------------------------------------------------------------------------

    async def submit(self, request: RoundRequest, view: RoundView) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self._submit(request, view)
        finally:
            if task is not None:
                self._running.discard(task)

    async def press(self, action: str, key: ChannelKey, actor: Actor, idempotency_key: str, view: RoundView) -> None:
        verb, _, arg = action.partition(":")
        if verb != REROLL or not arg.isdigit() or len(arg) > 18:
            await self._refuse(view, key.platform, UnknownRound("That button no longer works. Ask for a new image."))
            return
        request = RoundRequest(key=key, actor=actor, prompt="", idempotency_key=idempotency_key, reroll_of=int(arg))
        await self.submit(request, view)

    async def round_id(self, key: ChannelKey, number: int) -> int | None:
        """The id of round `number` in a channel (the console names rounds by number)."""
        found = await self.store.read(lambda c: rounds.by_number(c, key, number))
        return found.id if found else None

    async def is_round_message(self, key: ChannelKey, message_id: str) -> bool:
        found = await self.store.read(lambda c: rounds.by_message(c, key, message_id))
        return found is not None

    async def _submit(self, request: RoundRequest, view: RoundView) -> None:
        platform = request.key.platform
        try:
            await self.seen(request.actor, request.key.community)
            if not self.accepting:
                raise Busy(texts.SHUTTING_DOWN)
            prompt = self._clean_prompt(request)
            plan = await self.store.write(lambda c: self._claim(c, request, prompt))
        except DuplicateRequest:
            log.info("duplicate request %s ignored", request.idempotency_key)
            return
        except UserFacingError as error:
            await self._refuse(view, platform, error)
            return
        if plan.refusal is not None:
            await self._refuse(view, platform, plan.refusal)
            return
        user = (platform.value, request.actor.user_id)
        if self._per_user[user] >= self.settings.user_concurrency:
            busy = Busy(f"You already have {self._per_user[user]} images in progress. Wait for one to finish.")
            await self._finish_failed(plan.round, busy, view, reserved=False)
            return
        self._per_user[user] += 1
        try:
            await self._run(request, plan, view)
        finally:
            self._per_user[user] -= 1
            if not self._per_user[user]:
                del self._per_user[user]

    def _clean_prompt(self, request: RoundRequest) -> str:
        # Control characters (other than line breaks and tabs) only ever confuse the model or the chat.
        prompt = "".join(
            ch for ch in request.prompt if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs")
        ).strip()
        if request.reroll_of is not None:
            return prompt
        if not prompt:
            if request.input_image is not None or request.reply_to is not None or request.parent_round:
                raise BadRequest("Tell me what to change, e.g. “make the background darker”.")
            raise BadRequest(texts.EMPTY_PROMPT[request.key.platform])
        if len(prompt) > self.settings.max_prompt_chars:
            raise BadRequest(
                f"That prompt is {len(prompt)} characters long; the limit is {self.settings.max_prompt_chars}. "
                "Please shorten it."
            )
        return prompt

    def _claim(self, conn: sqlite3.Connection, request: RoundRequest, prompt: str) -> _Plan:
        """Inside one write transaction: dedupe, resolve the parent, record the round."""
        now = self.clock()
        if conn.execute("SELECT 1 FROM rounds WHERE idem_key = ?", (request.idempotency_key,)).fetchone():
            raise DuplicateRequest(request.idempotency_key)
        key = request.key
        size, quality = request.size.value, request.quality.value
        parent: Round | None = None
        source: Round | None = None
        refusal: UserFacingError | None = None
        kind, input_sha = "generate", None
        if request.reroll_of is not None:
            kind = "reroll"
            source = rounds.get(conn, request.reroll_of)
            if source is None or source.key.platform != key.platform or source.key.community != key.community:
                refusal = UnknownRound("I can't find that image any more. Ask for a new one.")
            else:
                prompt, size, quality, input_sha = (
                    source.prompt,
                    source.size,
                    source.quality,
                    source.input_sha,
                )
                parent = rounds.get(conn, source.parent_id) if source.parent_id else None
        elif request.reply_to is not None or request.parent_round is not None:
            kind = "edit"
            if request.parent_round is not None:
                parent = rounds.get(conn, request.parent_round)
                if parent is not None and (parent.key != key or parent.status != "delivered"):
                    parent = None
            else:
                assert request.reply_to is not None
                parent = rounds.by_message(conn, key, request.reply_to)
            if parent is None:
                refusal = UnknownRound(f"I can't find that image. To refine one, {texts.REPLY_HINT[key.platform]}.")
            else:
                size, quality = parent.size, parent.quality  # a reply has no size option: keep the parent's
        elif request.input_image is not None:
            kind = "edit"
        claimed = rounds.claim(
            conn,
            idem_key=request.idempotency_key,
            key=key,
            user_id=request.actor.user_id,
            user_name=request.actor.display_name,
            parent_id=parent.id if parent else None,
            kind=kind,
            prompt=prompt,
            size=size,
            quality=quality,
            input_sha=input_sha,
            now=now,
        )
        if refusal is not None:
            rounds.update(conn, claimed.id, now, status="refused", reason=refusal.reason)
        return _Plan(round=claimed, parent=parent, refusal=refusal)

    async def _run(self, request: RoundRequest, plan: _Plan, view: RoundView) -> None:
        item = plan.round
        reserved = False
        fields: dict[str, object] = {}  # what the provider made; kept even when delivery fails (spend)
        try:
            if self._unavailable is not None and time.monotonic() < self._unavailable_until:
                raise ProviderUnavailable(self._unavailable.message)
            inputs = await self._inputs(request, item)
            input_sha = item.input_sha
            if inputs and input_sha is None:
                input_sha = await asyncio.to_thread(self.cache.put, inputs[0], "image/png")
            balance = await self.store.write(lambda c: self._reserve(c, item, input_sha))
            reserved = True
            job = await self._job(item, plan.parent, inputs)
            generated = await self._generate(item, job, view)
            # The cache write (hash + fsync) runs alongside the upload; both finish before the commit.
            stored = asyncio.create_task(asyncio.to_thread(self.cache.put, generated.image, generated.mime))
            result, fields = self._result(item, plan.parent, generated, balance.left)
            try:
                message_ids = await view.deliver(result)
            finally:
                fields["image_sha"] = await stored
            await self.store.write(lambda c: self._delivered(c, item, message_ids, fields))
            self.metrics.rounds.labels(item.key.platform.value, "delivered").inc()
            self.metrics.credits_spent.labels(item.key.platform.value).inc(item_cost(self.settings, item))
            log.info(
                "round %d delivered (%d credits, provider request %s)",
                item.id,
                item_cost(self.settings, item),
                generated.request_id,
                extra=_context(item),
            )
        except UserFacingError as error:
            await self._finish_failed(item, error, view, reserved=reserved, fields=fields)
        except asyncio.CancelledError:
            await asyncio.shield(self._interrupted(item, view, reserved=reserved))
            raise
        except Exception:
            log.exception("round %d failed unexpectedly", item.id, extra=_context(item))
            await self._finish_failed(item, None, view, reserved=reserved, fields=fields)

    async def _inputs(self, request: RoundRequest, item: Round) -> tuple[bytes, ...]:
        """The user's photo to edit: size-checked before download, decoded and normalised off the loop."""
        if request.input_image is not None:
            image = request.input_image
            limit = self.settings.max_input_bytes
            if image.declared_bytes is not None and image.declared_bytes > limit:
                raise_too_large(image.declared_bytes, limit)
            data = await image.fetch(limit)
            png, _, _ = await asyncio.to_thread(
                pictures.validate_input, data, max_bytes=limit, max_pixels=self.settings.max_input_pixels
            )
            return (png,)
        if item.input_sha is not None:  # a reroll of a photo edit reuses the stored photo
            stored = await asyncio.to_thread(self.cache.get, item.input_sha, "image/png")
            if stored is None:
                raise UnknownRound("The photo that image was made from is no longer stored. Send it again.")
            return (stored,)
        return ()

    def _reserve(self, conn: sqlite3.Connection, item: Round, input_sha: str | None) -> quotas.Balance:
        now = self.clock()
        cost = item_cost(self.settings, item)
        # Over quota or banned raises here and rolls this transaction back; `_finish_failed` records why.
        balance = quotas.reserve(
            conn,
            round_id=item.id,
            platform=item.key.platform,
            community=item.key.community,
            user_id=item.user_id,
            cost=cost,
            now=now,
            default_daily=self.settings.daily_credits,
        )
        rounds.update(conn, item.id, now, status="reserved", cost=cost, input_sha=input_sha)
        return balance

    async def _job(self, item: Round, parent: Round | None, inputs: tuple[bytes, ...]) -> ImageJob:
        parent_image = None
        if parent is not None:
            image = None
            if parent.image_sha:
                image = await asyncio.to_thread(self.cache.get, parent.image_sha, parent.mime or "image/png")
            parent_image = ParentImage(
                image=image,
                mime=parent.mime or "image/png",
                response_id=parent.response_id,
                image_call_id=parent.image_call_id,
            )
        safety = hmac.new(self._salt, f"{item.key.platform}:{item.user_id}".encode(), hashlib.sha256)
        return ImageJob(
            prompt=item.prompt,
            size=SIZES[Size(item.size)],
            quality=item.quality,
            parent=parent_image,
            inputs=inputs,
            safety_id=safety.hexdigest()[:32],
            round_id=item.id,
        )

    async def _generate(self, item: Round, job: ImageJob, view: RoundView) -> GeneratedImage:
        async def position(place: int) -> None:
            await quietly(view.queued(place), "queued", item.id)

        self.metrics.queue_depth.inc()
        try:
            await self.slots.acquire(position)
        except QueueFull:
            raise Busy("Easel is very busy right now. Try again in a few minutes.", ephemeral=False) from None
        finally:
            self.metrics.queue_depth.dec()
        self.metrics.in_flight.inc()
        started = time.monotonic()
        pump = ProgressPump(view, item.id)
        try:
            pump.started()

            async def on_partial(image: bytes, index: int) -> None:
                pump.partial(Preview(image=image, index=index, round_id=item.id))

            async with asyncio.timeout(self.settings.provider_timeout):
                generated = await self.provider.create(job, on_partial)
        except ProviderUnavailable as error:
            pump.cancel()
            self._unavailable, self._unavailable_until = error, time.monotonic() + UNAVAILABLE_PAUSE
            log.error(
                "the image provider is unavailable (%s); answering new requests at once for %g s",
                error.reason,
                UNAVAILABLE_PAUSE,
                extra=_context(item),
            )
            raise
        except TimeoutError:
            pump.cancel()
            raise ProviderTimeout(
                f"The image took longer than {self.settings.provider_timeout:g} s and was abandoned. It was not "
                "charged; try again, perhaps at a lower quality."
            ) from None
        except BaseException:
            pump.cancel()
            raise
        finally:
            self.slots.release()
            self.metrics.in_flight.dec()
            self.metrics.provider_latency.labels(self.settings.image_api).observe(time.monotonic() - started)
        await pump.close()
        return generated

    def _result(
        self, item: Round, parent: Round | None, generated: GeneratedImage, left: int
    ) -> tuple[RoundResult, dict[str, object]]:
        """The result to show, and the round's columns describing it (written with the final commit)."""
        width, height = pictures.image_size(generated.image)  # reads the header only
        usage = generated.usage or estimated_usage(Size(item.size), Quality(item.quality))
        fields: dict[str, object] = {
            "mime": generated.mime,
            "width": width,
            "height": height,
            "response_id": generated.response_id,
            "image_call_id": generated.image_call_id,
            "revised_prompt": generated.revised_prompt,
            "request_id": generated.request_id,
            "text_tokens_in": usage.text_input_tokens,
            "image_tokens_in": usage.image_input_tokens,
            "image_tokens_out": usage.image_output_tokens,
            "host_tokens_in": usage.host_input_tokens,
            "host_tokens_out": usage.host_output_tokens,
            "est_usd": estimate_usd(usage, self.settings.prices),
        }
        result = RoundResult(
            round_id=item.id,
            number=item.number,
            image=generated.image,
            mime=generated.mime,
            width=width,
            height=height,
            caption=texts.caption(item.number, item.prompt, left, parent.number if parent else None),
            credits_left=left,
            revised_prompt=generated.revised_prompt,
            buttons=(Button("Reroll", f"{REROLL}:{item.id}"),),
        )
        return result, fields

    def _delivered(
        self, conn: sqlite3.Connection, item: Round, message_ids: list[str], fields: dict[str, object]
    ) -> None:
        rounds.update(conn, item.id, self.clock(), status="delivered", **fields)
        rounds.attach_messages(conn, item.id, item.key, message_ids)

    async def _finish_failed(
        self,
        item: Round,
        error: UserFacingError | None,
        view: RoundView,
        *,
        reserved: bool,
        fields: dict[str, object] | None = None,
    ) -> None:
        """Refund (once), record why, and tell the user. `error` None means an unexpected failure."""
        status = "refused" if error is not None and not reserved else "failed"
        reason = error.reason if error is not None else "error"
        now = self.clock()

        def txn(conn: sqlite3.Connection) -> None:
            quotas.refund(conn, item.id, now)
            rounds.update(conn, item.id, now, status=status, reason=reason, **(fields or {}))

        await self.store.write(txn)
        self.metrics.rounds.labels(item.key.platform.value, error.reason if error else "error").inc()
        await self._refuse(view, item.key.platform, error)

    async def _interrupted(self, item: Round, view: RoundView, *, reserved: bool) -> None:
        now = self.clock()

        def txn(conn: sqlite3.Connection) -> None:
            quotas.refund(conn, item.id, now)
            rounds.update(conn, item.id, now, status="failed", reason="shutdown")

        try:
            await self.store.write(txn)
            self.metrics.rounds.labels(item.key.platform.value, "shutdown").inc()
            async with asyncio.timeout(5):
                await view.refuse(Refusal(texts.STOPPED_MIDWAY, "shutdown", ephemeral=False))
        except Exception:
            log.exception("could not finish interrupted round %d cleanly", item.id, extra=_context(item))

    async def _refuse(self, view: RoundView, platform: Platform, error: UserFacingError | None) -> None:
        if error is None:
            refusal = Refusal(GENERIC_APOLOGY, "error", ephemeral=False)
        else:
            refusal = Refusal(error.message, error.reason, error.ephemeral)
        self.metrics.refusals.labels(platform.value, refusal.reason).inc()
        await quietly(view.refuse(refusal), "refuse", 0)

    # -- notices ----------------------------------------------------------------------------------------

    async def take_notices(self, platform: Platform) -> list[PendingNotice]:
        rows = await self.store.read(
            lambda c: c.execute(
                "SELECT * FROM notices WHERE platform = ? AND sent_at IS NULL ORDER BY id", (platform,)
            ).fetchall()
        )
        return [
            PendingNotice(
                id=row["id"],
                key=ChannelKey(platform, row["community"], row["channel"], row["thread"]),
                reply_to=row["reply_to"],
                text=row["text"],
            )
            for row in rows
        ]

    async def notice_sent(self, notice_id: int) -> None:
        stamp = self.clock().isoformat()
        await self.store.write(lambda c: c.execute("UPDATE notices SET sent_at = ? WHERE id = ?", (stamp, notice_id)))

    # -- inbox (core.inbox): updates recorded before the platform is told they arrived ---------------------

    async def inbox_put(self, platform: Platform, items: list[tuple[str, str]]) -> None:
        """Record a batch of (idempotency key, payload JSON) in one transaction; known keys are left alone."""
        await inbox.put(self.store, platform, items, self.clock())

    async def inbox_done(self, platform: Platform, idem_key: str) -> None:
        await inbox.done(self.store, platform, idem_key)

    async def inbox_pending(self, platform: Platform) -> list[str]:
        """Payloads recorded but not handled (a crash or a stop interrupted them), oldest first."""
        return await inbox.pending(self.store, platform, self.clock())

    def help_text(self, platform: Platform) -> str:
        return texts.help_text(platform)


def _context(item: Round) -> dict[str, object]:
    """Fields the log formatter shows on every line about a round."""
    return {"platform": item.key.platform.value, "community": item.key.community, "round_id": item.id}


def item_cost(settings: Settings, item: Round) -> int:
    return settings.cost(Size(item.size), Quality(item.quality))


def raise_too_large(size: int, limit: int) -> None:
    from core.errors import BadInputImage

    raise BadInputImage(
        f"That image is {size / 1e6:.1f} MB; the most I can take is {limit / 1e6:.0f} MB. Send a smaller one."
    )


def _add_notice(conn: sqlite3.Connection, key: ChannelKey, reply_to: str | None, text: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO notices (platform, community, channel, thread, reply_to, text, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key.platform, key.community, key.channel, key.thread, reply_to, text, now.isoformat()),
    )
