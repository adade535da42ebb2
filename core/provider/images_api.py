"""The Images route: `images.generate`, or `images.edit` with the parent image and the reference images
uploaded each time (parent first). It has no background mode: `resume` finds nothing to follow and
`cancel` does nothing (the service abandons the call). It stores no responses, so `delete` has nothing to do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from openai import AsyncOpenAI, omit
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
    ImagesResponse,
)

from core.errors import ProviderRejected, ResponseGone, UnknownRound
from core.ports import GeneratedImage, ImageJob, ProviderEvents, Usage
from core.provider.classify import Failure, InBand, Progress, stopped
from core.provider.options import ProviderOptions
from core.provider.retries import CallContext, with_retries
from core.provider.sse import reading
from core.provider.uploads import decode_off_loop, pictures, prepare

PARAMS = ("size", "quality", "background", "output_format")


def images_usage(usage: object) -> Usage | None:
    if usage is None:
        return None
    details = getattr(usage, "input_tokens_details", None)
    text_tokens = getattr(details, "text_tokens", 0)
    image_tokens = getattr(details, "image_tokens", 0)
    output_tokens = getattr(usage, "output_tokens", 0)
    return Usage(
        text_input_tokens=text_tokens if isinstance(text_tokens, int) else 0,
        image_input_tokens=image_tokens if isinstance(image_tokens, int) else 0,
        image_output_tokens=output_tokens if isinstance(output_tokens, int) else 0,
    )


class ImagesProvider:
    route = "images"

    def __init__(self, client: AsyncOpenAI, **options: Any) -> None:
        self._client = client
        self._options = ProviderOptions(**options)

    @property
    def background(self) -> bool:
        return False

    async def aclose(self) -> None:
        await self._client.close()

    async def resume(self, response_id: str, after_seq: int | None, events: ProviderEvents) -> GeneratedImage:
        raise ResponseGone(response_id)

    async def cancel(self, response_id: str) -> None:
        return None

    async def delete(self, response_id: str) -> bool:
        return False  # the Images API stores nothing to delete

    async def create(self, job: ImageJob, events: ProviderEvents) -> GeneratedImage:
        parent = job.parent
        if parent is not None and parent.image is None:
            raise UnknownRound("provider.expired")
        parent_image = (parent.image, parent.mime) if parent is not None and parent.image else None
        uploads = await prepare(pictures(job, parent_image), self._options.max_upload_bytes)
        files = [upload.file(index) for index, upload in enumerate(uploads)]
        request: dict[str, Any] = {"prompt": job.prompt, "model": job.model or self._options.image_model}
        request.update({key: job.params[key] for key in PARAMS if job.params.get(key)})
        request.setdefault("output_format", "png")
        request.update({"n": 1, "safety_identifier": job.safety_id or omit})
        if files:
            # One file goes out as `image`, several as `image[]`; each carries a filename and a MIME type.
            request["image"] = files[0] if len(files) == 1 else files
        call: Callable[..., Awaitable[Any]] = self._client.images.edit if files else self._client.images.generate

        async def attempt(progress: Progress) -> GeneratedImage:
            if self._options.partials:
                return await self._streamed(call, request, events, progress)
            answer = cast(ImagesResponse, await call(**request))
            progress.request_id = getattr(answer, "_request_id", None)
            first = answer.data[0] if answer.data else None
            if first is None or not first.b64_json:
                raise InBand(Failure(ProviderRejected("provider.no_image")))
            progress.output = True
            return GeneratedImage(
                image=await decode_off_loop(first.b64_json),
                usage=images_usage(answer.usage),
                request_id=progress.request_id,
            )

        return await with_retries(self._options.policy(), CallContext(job.round_id, self.route), attempt)

    async def _streamed(
        self,
        call: Callable[..., Awaitable[Any]],
        request: dict[str, Any],
        events: ProviderEvents,
        progress: Progress,
    ) -> GeneratedImage:
        stream = await call(**request, stream=True, partial_images=self._options.partials)
        progress.request_id = stream.response.headers.get("x-request-id")
        async with reading(stream) as each:
            async for event in each:
                if isinstance(event, ImageGenPartialImageEvent | ImageEditPartialImageEvent):
                    progress.output = True
                    await events.partial(await decode_off_loop(event.b64_json), event.partial_image_index)
                elif isinstance(event, ImageGenCompletedEvent | ImageEditCompletedEvent):
                    progress.output = True
                    return GeneratedImage(
                        image=await decode_off_loop(event.b64_json),
                        usage=images_usage(event.usage),
                        request_id=progress.request_id,
                    )
        raise InBand(Failure(stopped()))
