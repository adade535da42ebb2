"""Reading a Responses answer, streamed or whole: the image, its ids and usage as they arrive, the stage and
sequence number reported to `ProviderEvents`, failures turned into `InBand` signals.

One `Reader` follows one response across a dropped and resumed stream and a polling fallback: events at or
below the last sequence number seen, and partial previews already shown, are not reported twice."""

from __future__ import annotations

from dataclasses import dataclass, field

from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseImageGenCallPartialImageEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseQueuedEvent,
    ResponseStreamEvent,
)
from openai.types.responses.response_output_item import ImageGenerationCall

from core.errors import ProviderError, ProviderRejected
from core.ports import GeneratedImage, ProviderEvents, Usage
from core.provider.classify import Failure, InBand, Progress, classify_code, safety, stopped
from core.provider.uploads import decode_off_loop

THINKING = "thinking"
DRAWING = "drawing"
TERMINAL = frozenset({"completed", "failed", "cancelled", "incomplete"})


def _as_int(value: object) -> int:
    return value if isinstance(value, int) else 0


def responses_usage(response: Response) -> Usage | None:
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


@dataclass
class Reader:
    events: ProviderEvents
    progress: Progress
    background: bool = False
    response_id: str | None = None
    last_seq: int | None = None  # the last stream event seen (where a resumed stream starts after)
    image: bytes | None = field(default=None, repr=False)
    call_id: str | None = None
    revised_prompt: str | None = None
    usage: Usage | None = None
    saw_call: bool = False
    terminal: bool = False
    stage: str = THINKING
    shown_partials: int = -1  # the highest partial index reported

    async def on_event(self, event: ResponseStreamEvent) -> None:
        seq = getattr(event, "sequence_number", None)
        if isinstance(seq, int):
            if self.last_seq is not None and seq <= self.last_seq:
                return  # replayed after a resume
            self.last_seq = seq
        if event.type.startswith("response.image_generation_call.") or (
            isinstance(event, ResponseOutputItemAddedEvent) and isinstance(event.item, ImageGenerationCall)
        ):
            self.stage = DRAWING
        if isinstance(event, ResponseCreatedEvent | ResponseQueuedEvent | ResponseInProgressEvent):
            await self.accept(event.response.id)
        if isinstance(seq, int):
            await self.events.progressed(seq, self.stage)
        await self._handle(event)

    async def accept(self, response_id: str) -> None:
        if self.response_id is None:
            self.response_id = response_id
            await self.events.accepted(response_id, self.background)

    async def _handle(self, event: ResponseStreamEvent) -> None:
        if isinstance(event, ResponseImageGenCallPartialImageEvent):
            self.progress.output = True
            if event.partial_image_index > self.shown_partials:
                self.shown_partials = event.partial_image_index
                await self.events.partial(await decode_off_loop(event.partial_image_b64), event.partial_image_index)
        elif isinstance(event, ResponseOutputItemDoneEvent):
            if isinstance(event.item, ImageGenerationCall):
                await self.take_call(event.item)
        elif isinstance(event, ResponseCompletedEvent | ResponseFailedEvent | ResponseIncompleteEvent):
            await self.take_response(event.response)
        elif isinstance(event, ResponseErrorEvent):
            self.terminal = True
            raise InBand(classify_code(event.code, None, None, self.progress, message=event.message))

    async def take_call(self, call: ImageGenerationCall) -> None:
        self.saw_call = True
        if call.status == "failed" or call.error is not None:
            error = call.error
            stage = error.moderation_details.moderation_stage if error and error.moderation_details else None
            code = error.code if error is not None else None
            type_ = error.type if error is not None else None
            message = error.message if error is not None else None
            raise InBand(classify_code(code, type_, stage, self.progress, message=message))
        if call.result and self.image is None:
            self.progress.output = True
            self.image = await decode_off_loop(call.result)  # a full-size image: decoded in a thread
            self.call_id = call.id
            self.revised_prompt = call.revised_prompt

    async def take_response(self, response: Response) -> None:
        """A whole response (completed event, polled or plain answer); only a terminal one is final."""
        self.response_id = self.response_id or response.id
        status = response.status or "completed"
        if status not in TERMINAL:
            return
        self.terminal = True
        for item in response.output or []:
            if isinstance(item, ImageGenerationCall):
                await self.take_call(item)
        if status == "cancelled":
            raise InBand(Failure(ProviderError("provider.cancelled", reason="cancelled")))
        if status == "incomplete":
            details = response.incomplete_details
            if details is not None and details.reason == "content_filter":
                raise InBand(Failure(safety(None)))
            if self.image is None:
                raise InBand(Failure(stopped()))
        if status == "failed" or (response.error is not None and self.image is None):
            error = response.error
            code = str(error.code) if error is not None and error.code else None
            message = error.message if error is not None else None
            raise InBand(classify_code(code, None, None, self.progress, message=message))
        self.usage = responses_usage(response)

    def finish(self) -> GeneratedImage:
        if self.image is None:
            if self.saw_call or not self.terminal:
                raise InBand(Failure(stopped()))
            # The host model answered without calling the tool (it is forced, but may still decline).
            raise InBand(Failure(ProviderRejected("provider.no_image")))
        return GeneratedImage(
            image=self.image,
            mime="image/png",
            response_id=self.response_id,
            image_call_id=self.call_id,
            revised_prompt=self.revised_prompt,
            usage=self.usage,
            request_id=self.progress.request_id,
        )
