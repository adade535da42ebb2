"""A hand-written fake of our own `ImageProvider` port, for tests that are not about the OpenAI wire."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from core.errors import ProviderError
from core.images import GeneratedImage, ImageJob, OnPartial, Usage


def png(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class FakeProvider:
    """Answers every job with a small PNG whose colour encodes the call number.

    Script failures with `fail_next(error)`; make calls wait with `gate` (an Event the test sets);
    `partials` previews are sent before the final image."""

    partials: int = 0
    delay: float = 0.0
    partial_delay: float = 0.0
    jobs: list[ImageJob] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    gate: asyncio.Event | None = None
    in_flight: int = 0
    peak_in_flight: int = 0
    on_call: Callable[[ImageJob], None] | None = None
    closed: bool = False

    def fail_next(self, *errors: ProviderError | BaseException) -> None:
        self.failures.extend(errors)

    async def create(self, job: ImageJob, on_partial: OnPartial) -> GeneratedImage:
        self.jobs.append(job)
        number = len(self.jobs)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.on_call is not None:
                self.on_call(job)
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.failures:
                raise self.failures.pop(0)
            for index in range(self.partials):
                await on_partial(png(16, 16, (index * 40, 0, 0)), index)
                await asyncio.sleep(self.partial_delay)  # a real stream waits on the network between partials
            return GeneratedImage(
                image=png(64, 64, (number % 256, 100, 150)),
                response_id=f"resp_{number}",
                image_call_id=f"ig_{number}",
                revised_prompt=f"revised: {job.prompt}",
                usage=Usage(text_input_tokens=10, image_output_tokens=272),
                request_id=f"req_{number}",
            )
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed = True
