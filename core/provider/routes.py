"""The OpenAI implementations of the image provider port (DESIGN §5).

`ResponsesProvider` uses the Responses API with the `image_generation` tool: edit rounds continue from the
parent's stored response (`previous_response_id`) and fall back to re-sending the parent image when the
provider no longer knows it. `ImagesProvider` uses `images.generate` / `images.edit` and always uploads.

Both map every OpenAI failure to a `core.errors.ProviderError` whose message is ours (never provider text),
and retry only where no image can have been made, hence billed: a refused connection, a 429 with a short
wait, a 5xx before any output. The SDK's own retries must be off (`max_retries=0`, see `build_provider`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, cast

import openai
from openai import AsyncOpenAI, omit
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
    ImagesResponse,
)
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseImageGenCallPartialImageEvent,
    ResponseIncompleteEvent,
    ResponseOutputItemDoneEvent,
    ResponseStreamEvent,
)
from openai.types.responses.response_output_item import ImageGenerationCall

from core.errors import (
    ConfigError,
    PreviousResponseGone,
    ProviderBusy,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    SafetyRefusal,
    UnknownRound,
)
from core.images import GeneratedImage, ImageJob, ImageProvider, OnPartial, Usage
from core.provider.pictures import extension_for, fit_for_upload
from core.settings import Settings

logger = logging.getLogger(__name__)

# Codes that only the operator can fix (billing, key, model access): never retried, always logged.
OPERATOR_CODES = frozenset({
    "insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "account_deactivated",
    "access_terminated", "invalid_api_key", "model_not_found", "organization_deactivated",
    "unsupported_country_region_territory",
})
SAFETY_CODES = frozenset({"moderation_blocked", "image_content_policy_violation", "content_policy_violation"})
# Codes that say the input picture was the problem (SDK types/responses/response_error.py).
IMAGE_CODES = frozenset({
    "invalid_image", "invalid_image_format", "invalid_base64_image", "invalid_image_url", "image_too_large",
    "image_too_small", "image_parse_error", "invalid_image_mode", "image_file_too_large",
    "unsupported_image_media_type", "empty_image_file", "failed_to_download_image", "image_file_not_found",
    "invalid_image_file",
})

# In-band codes that blame the request itself (a retry would fail the same way).
REQUEST_CODES = frozenset({"invalid_prompt", "context_length_exceeded", "invalid_request_error"})

BUSY_WAIT = 30.0  # what we suggest when the provider failed without telling us how long to wait
UNREACHABLE_WAIT = 60.0
MIN_SHOWN_WAIT = 5.0

EXPIRED = "That image has expired, so it can't be edited any more. Start a new one with /imagine."
UNAVAILABLE = "Image generation is unavailable right now; the bot's operator has been told. Please try later."
TIMED_OUT = "The image took too long and was abandoned. Please try again (lower quality is faster)."
REJECTED = "The image service couldn't process this request. Try rewording the prompt."
BAD_PICTURE = "The image service couldn't use that picture. Try a different one (PNG or JPEG)."
NO_IMAGE = "The image service answered without an image. Try rewording the prompt."


def busy_message(wait: float) -> str:
    return f"The image service is busy right now. Please try again in {math.ceil(wait)} s."


def stopped_message(wait: float) -> str:
    return f"The image service stopped before the image was finished. Please try again in {math.ceil(wait)} s."


def unreachable_message(wait: float) -> str:
    return f"The image service can't be reached right now. Please try again in {math.ceil(wait)} s."


def safety_message(stage: str | None) -> str:
    if stage == "input":
        return "The image service's safety system declined this request. Try rewording the prompt."
    if stage == "output":
        return "The image service's safety system blocked the finished image. Try a different prompt."
    return "The image service's safety system declined this. Try a different prompt."


@dataclass
class _Failure:
    """What one failed attempt means: the error to raise, and whether a new attempt is safe."""

    error: ProviderError
    retryable: bool = False
    wait: float | None = None  # the provider's Retry-After, if it gave one
    code: str | None = None  # the provider's error code, for the log


class _InBand(Exception):  # an internal signal, never leaves this module
    """A failure reported inside a 200 answer (stream event or response body)."""

    def __init__(self, failure: _Failure) -> None:
        super().__init__(failure.error.message)
        self.failure = failure


@dataclass
class _Progress:
    """What one attempt has seen so far; output means an image may be billed, so no retry."""

    output: bool = False
    request_id: str | None = None


@dataclass
class _Upload:
    data: bytes = field(repr=False)
    mime: str
    ext: str

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass
class _Result:
    """The pieces of an image as they arrive."""

    image: bytes | None = None
    call_id: str | None = None
    revised_prompt: str | None = None
    response_id: str | None = None
    usage: Usage | None = None
    saw_call: bool = False
    completed: bool = False


def _decode(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _InBand(_Failure(ProviderBusy(stopped_message(BUSY_WAIT), retry_after=BUSY_WAIT))) from None


def _as_int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` seconds or HTTP date)."""
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _connect_failed(exc: BaseException) -> bool:
    """True when the request never reached the server (refused or unresolvable), so a retry is free."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or any(
            cls.__name__ == "ConnectError" for cls in type(seen).__mro__
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _OpenAIProvider:
    """Retry policy and error mapping shared by both routes."""

    route = "openai"

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        image_model: str,
        partial_images: int = 2,
        retries: int = 2,
        timeout: float | None = None,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 20.0,
        max_upload_bytes: int = 20_000_000,
    ) -> None:
        self._client = client
        self._image_model = image_model
        self._partials = max(0, min(3, partial_images))
        self._retries = max(0, retries)
        self._timeout = timeout
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._max_upload_bytes = max_upload_bytes

    async def aclose(self) -> None:
        await self._client.close()

    # ---- retries -------------------------------------------------------------------------------------

    def _backoff_delay(self, retry: int) -> float:
        base: float = min(self._max_backoff, self._backoff * 2**retry)
        return base * random.uniform(0.75, 1.0)

    async def _with_retries(
        self, job: ImageJob, attempt: Callable[[_Progress], Awaitable[GeneratedImage]]
    ) -> GeneratedImage:
        """Run `attempt` until it succeeds or fails in a way that must not be retried. Each attempt is bounded
        by the timeout, each wait by `max_retry_after`/`max_backoff`, their number by `retries`."""
        retry = 0
        while True:
            progress = _Progress()
            try:
                async with asyncio.timeout(self._timeout):
                    return await attempt(progress)
            except TimeoutError:
                # Our own deadline: the provider may still finish (and bill) the image, so never retry.
                logger.warning("image call timed out after %ss (round %s, route %s, output seen: %s)",
                               self._timeout, job.round_id, self.route, progress.output)
                raise ProviderTimeout(TIMED_OUT) from None
            except _InBand as signal:
                failure = signal.failure
                self._log_failure(job, progress, failure, None)
            except openai.APIError as exc:
                failure = self._classify(exc, progress, job)
            except json.JSONDecodeError:
                # A garbled stream: part of the image may have been made, so report it and do not retry.
                logger.exception("unreadable answer from the image provider (round %s, route %s, request_id %s)",
                                 job.round_id, self.route, progress.request_id)
                raise ProviderBusy(stopped_message(BUSY_WAIT), retry_after=BUSY_WAIT) from None
            if not failure.retryable or retry >= self._retries:
                raise failure.error
            delay = self._backoff_delay(retry) if failure.wait is None else max(failure.wait, self._backoff)
            retry += 1
            logger.info("retrying image call in %.2fs (retry %d of %d, round %s, route %s, request_id %s)",
                        delay, retry, self._retries, job.round_id, self.route, progress.request_id)
            await asyncio.sleep(delay)

    # ---- error mapping ---------------------------------------------------------------------------------------

    def _classify(self, exc: openai.APIError, progress: _Progress, job: ImageJob) -> _Failure:
        if isinstance(exc, openai.APIStatusError) and exc.request_id:
            progress.request_id = exc.request_id
        if isinstance(exc, openai.APITimeoutError):
            failure = _Failure(ProviderTimeout(TIMED_OUT))
        elif isinstance(exc, openai.APIResponseValidationError):
            failure = _Failure(ProviderBusy(stopped_message(BUSY_WAIT), retry_after=BUSY_WAIT))
        elif isinstance(exc, openai.APIConnectionError):
            if _connect_failed(exc) and not progress.output:
                failure = _Failure(
                    ProviderBusy(unreachable_message(UNREACHABLE_WAIT), retry_after=UNREACHABLE_WAIT),
                    retryable=True,
                )
            else:
                # The request may have reached the server: an image may be on its way, so no retry.
                failure = _Failure(ProviderBusy(stopped_message(BUSY_WAIT), retry_after=BUSY_WAIT))
        elif isinstance(exc, openai.APIStatusError):
            failure = self._classify_status(exc, progress)
        else:  # an error payload inside a stream: no status, only code and type
            failure = self._classify_code(exc.code, exc.type, _moderation_stage(exc.body), progress)
        self._log_failure(job, progress, failure, exc)
        return failure

    def _classify_status(self, exc: openai.APIStatusError, progress: _Progress) -> _Failure:
        status, code = exc.status_code, exc.code
        if code == "previous_response_not_found":
            raise PreviousResponseGone(exc.request_id or "") from None
        if code in SAFETY_CODES:
            return _Failure(SafetyRefusal(safety_message(_moderation_stage(exc.body))))
        if status in (401, 403, 404) or code in OPERATOR_CODES or exc.type == "insufficient_quota":
            return _Failure(ProviderUnavailable(UNAVAILABLE))
        if status == 429:
            wait = _retry_after(exc.response.headers)
            if wait is not None and wait > self._max_retry_after:
                return _Failure(ProviderBusy(busy_message(wait), retry_after=wait))
            # Shown only once our own retries are spent: by then a few seconds more is the honest advice.
            shown = max(wait, MIN_SHOWN_WAIT) if wait is not None else BUSY_WAIT
            return _Failure(ProviderBusy(busy_message(shown), retry_after=shown), retryable=True, wait=wait)
        if status >= 500:
            return _Failure(
                ProviderBusy(busy_message(BUSY_WAIT), retry_after=BUSY_WAIT), retryable=not progress.output
            )
        if code in IMAGE_CODES:
            return _Failure(ProviderRejected(BAD_PICTURE))
        if status in (408, 409):
            return _Failure(ProviderBusy(busy_message(BUSY_WAIT), retry_after=BUSY_WAIT))
        return _Failure(ProviderRejected(REJECTED))

    def _classify_code(
        self, code: str | None, type_: str | None, stage: str | None, progress: _Progress
    ) -> _Failure:
        """Failures reported inside a 200 answer (stream error payloads, failed responses or image calls)."""
        failure = self._classify_in_band(code, type_, stage, progress)
        failure.code = code
        return failure

    def _classify_in_band(
        self, code: str | None, type_: str | None, stage: str | None, progress: _Progress
    ) -> _Failure:
        if code in SAFETY_CODES:
            return _Failure(SafetyRefusal(safety_message(stage)))
        if code in OPERATOR_CODES or type_ == "insufficient_quota":
            return _Failure(ProviderUnavailable(UNAVAILABLE))
        if code in IMAGE_CODES:
            return _Failure(ProviderRejected(BAD_PICTURE))
        if code == "rate_limit_exceeded":
            return _Failure(ProviderBusy(busy_message(BUSY_WAIT), retry_after=BUSY_WAIT))
        if code in REQUEST_CODES or type_ in ("invalid_request_error", "image_generation_user_error"):
            return _Failure(ProviderRejected(REJECTED))
        # A server-side failure: safe to try again only if no image can have been made yet.
        return _Failure(
            ProviderBusy(stopped_message(BUSY_WAIT), retry_after=BUSY_WAIT), retryable=not progress.output
        )

    def _log_failure(
        self, job: ImageJob, progress: _Progress, failure: _Failure, exc: openai.APIError | None
    ) -> None:
        status = getattr(exc, "status_code", None)
        code = getattr(exc, "code", None) or failure.code
        kind = type(exc).__name__ if exc is not None else "in-band"
        context = (f"round {job.round_id}, route {self.route}, request_id {progress.request_id}, "
                   f"status {status}, code {code}, {kind}")
        if isinstance(failure.error, ProviderUnavailable):
            # Only the operator can fix this (key, billing, model access); the provider's own text helps them,
            # except on 401 where it may quote part of the key.
            detail = "" if status == 401 else f": {str(getattr(exc, 'message', ''))[:300]}"
            logger.error("OpenAI refused Easel's account, check the API key, billing and model access (%s)%s",
                         context, detail)
        elif isinstance(failure.error, SafetyRefusal):
            logger.info("provider safety refusal (%s)", context)
        else:
            logger.warning("image call failed -> %s%s (%s)", type(failure.error).__name__,
                           " (will retry)" if failure.retryable else "", context)

    # ---- uploads -----------------------------------------------------------------------------------------

    async def _uploads(self, images: list[tuple[bytes, str]]) -> list[_Upload]:
        """Label each picture with a MIME type and shrink the ones over the upload cap."""
        prepared = []
        for original, original_mime in images:
            if len(original) > self._max_upload_bytes:
                data, mime, ext = await asyncio.to_thread(
                    fit_for_upload, original, original_mime, max_bytes=self._max_upload_bytes
                )
            else:
                data, mime, ext = original, original_mime, extension_for(original_mime)
            prepared.append(_Upload(data, mime, ext))
        return prepared


def _moderation_stage(body: object) -> str | None:
    if isinstance(body, dict):
        details = body.get("moderation_details")
        if isinstance(details, dict):
            stage = details.get("moderation_stage")
            return stage if isinstance(stage, str) else None
    return None


def _responses_usage(response: Response) -> Usage | None:
    host = getattr(response, "usage", None)
    tool_usage = getattr(response, "tool_usage", None)
    image_gen = getattr(tool_usage, "image_gen", None)
    if host is None and image_gen is None:
        return None
    details = getattr(image_gen, "input_tokens_details", None)
    return Usage(
        text_input_tokens=_as_int(getattr(details, "text_tokens", 0)),
        image_input_tokens=_as_int(getattr(details, "image_tokens", 0)),
        image_output_tokens=_as_int(getattr(image_gen, "output_tokens", 0)),
        host_input_tokens=_as_int(getattr(host, "input_tokens", 0)),
        host_output_tokens=_as_int(getattr(host, "output_tokens", 0)),
    )


def _images_usage(usage: object) -> Usage | None:
    if usage is None:
        return None
    details = getattr(usage, "input_tokens_details", None)
    return Usage(
        text_input_tokens=_as_int(getattr(details, "text_tokens", 0)),
        image_input_tokens=_as_int(getattr(details, "image_tokens", 0)),
        image_output_tokens=_as_int(getattr(usage, "output_tokens", 0)),
    )


class ResponsesProvider(_OpenAIProvider):
    """Responses API + `image_generation` tool: the top-level model is the host model, the tool's is the
    image model. Streams when partial previews are wanted."""

    route = "responses"

    def __init__(self, client: AsyncOpenAI, *, host_model: str, image_model: str, **options: Any) -> None:
        super().__init__(client, image_model=image_model, **options)
        self._host_model = host_model

    async def create(self, job: ImageJob, on_partial: OnPartial) -> GeneratedImage:
        parent = job.parent
        if parent is not None and parent.response_id:
            try:
                return await self._run(job, on_partial, previous=parent.response_id, parent_image=None)
            except PreviousResponseGone:
                logger.info("provider forgot response %s (round %s); sending the parent image instead",
                            parent.response_id, job.round_id)
        if parent is not None and parent.image is None:
            raise UnknownRound(EXPIRED)
        parent_image = (parent.image, parent.mime) if parent is not None and parent.image else None
        return await self._run(job, on_partial, previous=None, parent_image=parent_image)

    async def _run(
        self, job: ImageJob, on_partial: OnPartial, *, previous: str | None,
        parent_image: tuple[bytes, str] | None,
    ) -> GeneratedImage:
        pictures = ([parent_image] if parent_image else []) + [(data, "image/png") for data in job.inputs]
        uploads = await self._uploads(pictures)
        content: list[dict[str, Any]] = [{"type": "input_text", "text": job.prompt}]
        content += [{"type": "input_image", "image_url": u.data_url(), "detail": "auto"} for u in uploads]
        tool: dict[str, Any] = {
            "type": "image_generation", "model": self._image_model, "size": job.size, "quality": job.quality,
            "output_format": "png",
        }
        if self._partials:
            # Streaming with zero partials was once refused by the API; ask for at least one.
            tool["partial_images"] = self._partials
        request: dict[str, Any] = {
            "model": self._host_model,
            "input": [{"role": "user", "content": content}],
            "tools": [tool],
            "tool_choice": {"type": "image_generation"},
            "previous_response_id": previous if previous else omit,
            "safety_identifier": job.safety_id or omit,
        }

        async def attempt(progress: _Progress) -> GeneratedImage:
            if self._partials:
                return await self._streamed(request, on_partial, progress)
            response = await self._client.responses.create(**request)
            progress.request_id = getattr(response, "_request_id", None)
            result = _Result()
            self._take_response(response, result, progress)
            return self._finish(result, progress)

        return await self._with_retries(job, attempt)

    async def _streamed(
        self, request: dict[str, Any], on_partial: OnPartial, progress: _Progress
    ) -> GeneratedImage:
        stream = await self._client.responses.create(**request, stream=True)
        progress.request_id = stream.response.headers.get("x-request-id")
        result = _Result()
        try:
            async with stream:
                async for event in stream:
                    await self._on_event(event, result, on_partial, progress)
        except openai.APIError as exc:
            if isinstance(exc, openai.APITimeoutError) or result.image is None:
                raise
            # The connection broke after the image arrived: it is made (and billed), so deliver it.
            logger.warning("stream ended early after the image arrived (request_id %s)", progress.request_id)
        return self._finish(result, progress)

    async def _on_event(
        self, event: ResponseStreamEvent, result: _Result, on_partial: OnPartial, progress: _Progress
    ) -> None:
        if isinstance(event, ResponseCreatedEvent):
            result.response_id = event.response.id
        elif isinstance(event, ResponseImageGenCallPartialImageEvent):
            progress.output = True
            await on_partial(_decode(event.partial_image_b64), event.partial_image_index)
        elif isinstance(event, ResponseOutputItemDoneEvent):
            if isinstance(event.item, ImageGenerationCall):
                self._take_call(event.item, result, progress)
        elif isinstance(event, ResponseCompletedEvent):
            self._take_response(event.response, result, progress)
        elif isinstance(event, ResponseFailedEvent):
            error = event.response.error
            code = str(error.code) if error is not None and error.code else None
            raise _InBand(self._classify_code(code, None, None, progress))
        elif isinstance(event, ResponseIncompleteEvent):
            details = event.response.incomplete_details
            if details is not None and details.reason == "content_filter":
                raise _InBand(_Failure(SafetyRefusal(safety_message(None))))
            raise _InBand(_Failure(ProviderBusy(stopped_message(BUSY_WAIT), retry_after=BUSY_WAIT)))
        elif isinstance(event, ResponseErrorEvent):
            raise _InBand(self._classify_code(event.code, None, None, progress))

    def _take_call(self, call: ImageGenerationCall, result: _Result, progress: _Progress) -> None:
        result.saw_call = True
        if call.status == "failed" or call.error is not None:
            error = call.error
            stage = error.moderation_details.moderation_stage if error and error.moderation_details else None
            code = error.code if error is not None else None
            type_ = error.type if error is not None else None
            raise _InBand(self._classify_code(code, type_, stage, progress))
        if call.result and result.image is None:
            progress.output = True
            result.image = _decode(call.result)
            result.call_id = call.id
            result.revised_prompt = call.revised_prompt

    def _take_response(self, response: Response, result: _Result, progress: _Progress) -> None:
        result.response_id = response.id
        result.completed = True
        for item in response.output or []:
            if isinstance(item, ImageGenerationCall):
                self._take_call(item, result, progress)
        if response.status == "failed" or (response.error is not None and result.image is None):
            code = str(response.error.code) if response.error is not None else None
            raise _InBand(self._classify_code(code, None, None, progress))
        result.usage = _responses_usage(response)

    def _finish(self, result: _Result, progress: _Progress) -> GeneratedImage:
        if result.image is None:
            if result.saw_call or not result.completed:
                raise _InBand(_Failure(ProviderBusy(stopped_message(BUSY_WAIT), retry_after=BUSY_WAIT)))
            # The host model answered without calling the tool (it is forced, but may still decline).
            raise _InBand(_Failure(ProviderRejected(NO_IMAGE)))
        return GeneratedImage(
            image=result.image, mime="image/png", response_id=result.response_id, image_call_id=result.call_id,
            revised_prompt=result.revised_prompt, usage=result.usage, request_id=progress.request_id,
        )


class ImagesProvider(_OpenAIProvider):
    """Images API: `images.generate`, or `images.edit` with the parent image and photos uploaded each time."""

    route = "images"

    async def create(self, job: ImageJob, on_partial: OnPartial) -> GeneratedImage:
        parent = job.parent
        if parent is not None and parent.image is None:
            raise UnknownRound(EXPIRED)
        pictures = [(parent.image, parent.mime)] if parent is not None and parent.image else []
        pictures += [(data, "image/png") for data in job.inputs]
        uploads = await self._uploads(pictures)
        files = [(f"image-{index + 1}.{u.ext}", u.data, u.mime) for index, u in enumerate(uploads)]
        request: dict[str, Any] = {
            "prompt": job.prompt, "model": self._image_model, "size": job.size, "quality": job.quality,
            "output_format": "png", "n": 1, "safety_identifier": job.safety_id or omit,
        }
        if files:
            # One file goes out as `image`, several as `image[]`; both carry a filename and a MIME type.
            request["image"] = files[0] if len(files) == 1 else files

        async def attempt(progress: _Progress) -> GeneratedImage:
            call: Callable[..., Awaitable[Any]] = self._client.images.edit if files else self._client.images.generate
            if self._partials:
                return await self._streamed(call, request, on_partial, progress)
            answer = cast(ImagesResponse, await call(**request))
            progress.request_id = getattr(answer, "_request_id", None)
            first = answer.data[0] if answer.data else None
            if first is None or not first.b64_json:
                raise _InBand(_Failure(ProviderRejected(NO_IMAGE)))
            progress.output = True
            return GeneratedImage(image=_decode(first.b64_json), usage=_images_usage(answer.usage),
                                  request_id=progress.request_id)

        return await self._with_retries(job, attempt)

    async def _streamed(
        self, call: Callable[..., Awaitable[Any]], request: dict[str, Any], on_partial: OnPartial,
        progress: _Progress,
    ) -> GeneratedImage:
        stream = await call(**request, stream=True, partial_images=self._partials)
        progress.request_id = stream.response.headers.get("x-request-id")
        async with stream:
            async for event in stream:
                if isinstance(event, ImageGenPartialImageEvent | ImageEditPartialImageEvent):
                    progress.output = True
                    await on_partial(_decode(event.b64_json), event.partial_image_index)
                elif isinstance(event, ImageGenCompletedEvent | ImageEditCompletedEvent):
                    progress.output = True
                    return GeneratedImage(image=_decode(event.b64_json), usage=_images_usage(event.usage),
                                          request_id=progress.request_id)
        raise _InBand(_Failure(ProviderBusy(stopped_message(BUSY_WAIT), retry_after=BUSY_WAIT)))


def build_provider(
    settings: Settings, client: AsyncOpenAI | None = None, *, backoff: float = 0.5
) -> ImageProvider:
    """The provider for `settings.image_api`, on one client with the SDK's retries off and explicit timeouts.
    `base_url=None` lets the SDK read OPENAI_BASE_URL. Tests may pass their own `client`."""
    if client is None:
        try:
            client = AsyncOpenAI(
                api_key=settings.openai_api_key or None,
                base_url=settings.openai_base_url or None,
                max_retries=0,
                timeout=openai.Timeout(settings.provider_timeout, connect=min(10.0, settings.provider_timeout)),
            )
        except openai.OpenAIError:
            raise ConfigError("OPENAI_API_KEY is required to generate images") from None
    options: dict[str, Any] = {
        "image_model": settings.image_model,
        "partial_images": settings.partial_images,
        "retries": settings.provider_retries,
        "timeout": settings.provider_timeout,
        "backoff": backoff,
    }
    if settings.image_api == "images":
        return ImagesProvider(client, **options)
    return ResponsesProvider(client, host_model=settings.host_model, **options)
