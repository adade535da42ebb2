"""The Responses route: the `image_generation` tool on a mainline host model (DESIGN §5).

Edit rounds continue from the parent's stored response (`previous_response_id`) and fall back to sending
the parent image when the provider no longer knows it. Reference images go as further `input_image` parts.

In background mode (the default) the response runs at the provider independently of our connection: its id
is reported as soon as it exists (`ProviderEvents.accepted`), a dropped stream is resumed or polled, a round
picked up after a restart is followed with `resume`, and `cancel` stops it. Without background mode the
call streams (or not) exactly as a plain request, bounded by the whole-call timeout.

In background mode the provider keeps each response until it expires; without it Easel asks `store: false`.
`delete` removes a stored one (`easel forget`)."""

from __future__ import annotations

import logging
from typing import Any

import openai
from openai import AsyncOpenAI, omit

from core.errors import PreviousResponseGone, ResponseGone, UnknownRound
from core.ports import GeneratedImage, ImageJob, ProviderEvents
from core.provider.background import Follower
from core.provider.classify import Failure, InBand, Progress, classify, stopped
from core.provider.options import ProviderOptions
from core.provider.retries import CallContext, log_failure, with_retries
from core.provider.sse import reading
from core.provider.stream import Reader
from core.provider.uploads import pictures, prepare

logger = logging.getLogger(__name__)

# Stream failures after which a background response is still running at the provider and can be followed.
DROPPED = (openai.APIConnectionError, openai.APIResponseValidationError)
DELETE_TIMEOUT = 30.0  # seconds for one delete when no per-call timeout is configured


class ResponsesProvider:
    route = "responses"

    def __init__(self, client: AsyncOpenAI, *, host_model: str, **options: Any) -> None:
        self._client = client
        self._host_model = host_model
        self._options = ProviderOptions(**options)

    @property
    def background(self) -> bool:
        return self._options.background

    async def aclose(self) -> None:
        await self._client.close()

    # ---- create ---------------------------------------------------------------------------------------

    async def create(self, job: ImageJob, events: ProviderEvents) -> GeneratedImage:
        parent = job.parent
        # Without background mode nothing is stored at the provider (`store: false`, zero data retention), so
        # an edit sends its parent image instead of continuing from the parent's response.
        if parent is not None and parent.response_id and self.background:
            try:
                return await self._run(job, events, previous=parent.response_id, parent_image=None)
            except PreviousResponseGone:
                logger.info(
                    "provider forgot response %s (round %s); sending the parent image instead",
                    parent.response_id,
                    job.round_id,
                )
        if parent is not None and parent.image is None:
            raise UnknownRound("provider.expired")
        parent_image = (parent.image, parent.mime) if parent is not None and parent.image else None
        return await self._run(job, events, previous=None, parent_image=parent_image)

    def _request(self, job: ImageJob, previous: str | None, urls: list[str]) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "input_text", "text": job.prompt}]
        content += [{"type": "input_image", "image_url": url, "detail": "auto"} for url in urls]
        tool: dict[str, Any] = {"type": "image_generation", "model": job.model or self._options.image_model}
        tool.update(
            {key: job.params[key] for key in ("size", "quality", "background", "output_format") if job.params.get(key)}
        )
        tool.setdefault("output_format", "png")
        if self._options.partials:
            # Streaming with zero partials was once refused by the API; ask for at least one when streaming.
            tool["partial_images"] = self._options.partials
        return {
            "model": self._host_model,
            "input": [{"role": "user", "content": content}],
            "tools": [tool],
            "tool_choice": {"type": "image_generation"},
            "previous_response_id": previous if previous else omit,
            "safety_identifier": job.safety_id or omit,
            "store": omit if self.background else False,
        }

    async def _run(
        self,
        job: ImageJob,
        events: ProviderEvents,
        *,
        previous: str | None,
        parent_image: tuple[bytes, str] | None,
    ) -> GeneratedImage:
        uploads = await prepare(pictures(job, parent_image), self._options.max_upload_bytes)
        request = self._request(job, previous, [u.data_url() for u in uploads])
        context = CallContext(job.round_id, self.route)

        async def attempt(progress: Progress) -> GeneratedImage:
            reader = Reader(events, progress, background=self.background)
            if self.background:
                return await self._background(request, reader, context)
            if self._options.partials:
                return await self._streamed(request, reader)
            response = await self._client.responses.create(**request)
            progress.request_id = getattr(response, "_request_id", None)
            await reader.accept(response.id)
            await reader.take_response(response)
            return reader.finish()

        try:
            return await with_retries(self._options.policy(whole_call=not self.background), context, attempt)
        except ResponseGone:
            # Our own round's response vanished under us: the image is lost, nothing more to follow.
            raise stopped() from None

    async def _streamed(self, request: dict[str, Any], reader: Reader) -> GeneratedImage:
        stream = await self._client.responses.create(**request, stream=True)
        reader.progress.request_id = stream.response.headers.get("x-request-id")
        try:
            async with reading(stream) as each:
                async for event in each:
                    await reader.on_event(event)
        except openai.APIError as exc:
            if isinstance(exc, openai.APITimeoutError) or reader.image is None:
                raise
            # The connection broke after the image arrived: it is made (and billed), so deliver it.
            logger.warning("stream ended early after the image arrived (request_id %s)", reader.progress.request_id)
        return reader.finish()

    async def _background(self, request: dict[str, Any], reader: Reader, context: CallContext) -> GeneratedImage:
        per_call = self._options.per_call()
        follower = Follower(self._client, self._options, context)
        if not self._options.partials:
            response = await self._client.responses.create(**request, background=True, **per_call)
            reader.progress.request_id = getattr(response, "_request_id", None)
            await reader.accept(response.id)
            await reader.take_response(response)
            return reader.finish() if reader.terminal else await follower.follow(reader, stream_first=False)
        stream = await self._client.responses.create(**request, background=True, stream=True, **per_call)
        reader.progress.request_id = stream.response.headers.get("x-request-id")
        try:
            async with reading(stream) as each:
                async for event in each:
                    await reader.on_event(event)
        except DROPPED as exc:
            if reader.response_id is None:
                raise  # nothing to follow: classified (and maybe retried) like any failed call
            logger.info(
                "background stream of %s dropped after seq %s (%s, round %s)",
                reader.response_id,
                reader.last_seq,
                type(exc).__name__,
                context.round_id,
            )
        if reader.terminal:
            return reader.finish()
        if reader.response_id is None:
            raise InBand(Failure(stopped()))
        return await follower.follow(reader)

    # ---- a round picked up again, and Cancel ---------------------------------------------------------------

    async def resume(self, response_id: str, after_seq: int | None, events: ProviderEvents) -> GeneratedImage:
        context = CallContext(0, self.route)
        reader = Reader(events, Progress(), background=True, response_id=response_id, last_seq=after_seq)
        try:
            return await Follower(self._client, self._options, context).follow(reader)
        except InBand as signal:
            log_failure(context, reader.progress, signal.failure, None)
            raise signal.failure.error from None

    async def cancel(self, response_id: str) -> None:
        try:
            await self._client.responses.cancel(response_id, **self._options.per_call())
        except openai.APIError as exc:
            # Best effort: the response may have finished or expired already.
            logger.info("cancelling %s failed: %s %s", response_id, type(exc).__name__, getattr(exc, "status_code", ""))

    async def delete(self, response_id: str) -> bool:
        """Delete a stored response at the provider (an HTTP delete of /v1/responses/{id}). In background mode the
        API keeps each response until it expires, and an edit round continues from it; `easel forget` deletes
        those of the forgotten user's rounds. True if deleted, False if the provider no longer held it."""
        try:
            await self._client.responses.delete(response_id, timeout=self._options.call_timeout or DELETE_TIMEOUT)
        except openai.NotFoundError:
            return False
        except openai.APIError as exc:
            logger.warning(
                "deleting response %s failed: %s %s (request_id %s)",
                response_id,
                type(exc).__name__,
                getattr(exc, "status_code", ""),
                getattr(exc, "request_id", None),
            )
            failure = classify(exc, Progress(), max_retry_after=self._options.max_retry_after)
            raise failure.error from None
        return True
