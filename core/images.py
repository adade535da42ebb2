"""The image provider port. Implementations: `core.provider.routes` (Responses and Images routes) and the
hand-written fakes in tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ParentImage:
    """The round an edit starts from. `image` may be None when the cache no longer holds it; the Responses
    route can still continue from `response_id`."""

    image: bytes | None = field(default=None, repr=False)
    mime: str = "image/png"
    response_id: str | None = None
    image_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ImageJob:
    prompt: str
    size: str  # "1024x1024" | "1024x1536" | "1536x1024"
    quality: str  # "low" | "medium" | "high"
    parent: ParentImage | None = None
    inputs: tuple[bytes, ...] = field(default=(), repr=False)  # user photos, already normalised to PNG
    safety_id: str = ""  # stable hash of the end user, sent as safety_identifier
    round_id: int = 0  # for logs only


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them (0 when it did not)."""

    text_input_tokens: int = 0
    image_input_tokens: int = 0
    image_output_tokens: int = 0
    host_input_tokens: int = 0
    host_output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    image: bytes = field(repr=False)
    mime: str = "image/png"
    response_id: str | None = None
    image_call_id: str | None = None
    revised_prompt: str | None = None
    usage: Usage | None = None
    request_id: str | None = None


# Called with (image bytes, partial index) for each partial preview the provider streams.
OnPartial = Callable[[bytes, int], Awaitable[None]]


class ImageProvider(Protocol):
    """Makes one image. Raises `core.errors.ProviderError` subclasses for every provider failure, and
    `asyncio.CancelledError` passes through. Never retries a call that may already have produced output."""

    async def create(self, job: ImageJob, on_partial: OnPartial) -> GeneratedImage: ...

    async def aclose(self) -> None: ...
