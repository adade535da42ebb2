"""A hand-written fake of our own `ImageProvider` port (`core.ports`), for tests that are not about the
OpenAI wire: background mode, resume and cancel included, fully typed."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from core.errors import ProviderError, ResponseGone
from core.ports import GeneratedImage, ImageJob, ProviderEvents, Usage


def png(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def transparent_png(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    """RGBA: the left half fully transparent, the right half opaque."""
    image = Image.new("RGBA", (width, height), (*color, 255))
    image.paste((*color, 0), (0, 0, width // 2, height))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class NullEvents:
    """`ProviderEvents` that ignores everything."""

    async def accepted(self, response_id: str, background: bool) -> None:
        return None

    async def progressed(self, seq: int, stage: str) -> None:
        return None

    async def partial(self, image: bytes, index: int) -> None:
        return None


@dataclass
class FakeProvider:
    """Answers every job with a small PNG whose colour encodes the call number (RGBA with real alpha when
    the job asks for a transparent background).

    Script failures with `fail_next(error)`; make calls wait with `gate` (an Event the test sets);
    `partials` previews are sent before the final image. With `background=True` each job is accepted as
    `resp_N` first; `resume` then finishes a response the fake still holds (`held`) and raises
    `ResponseGone` for one it does not; `cancel` records the id and makes a waiting job fail; `delete` records
    the id and answers True for an id it made and had not deleted yet."""

    partials: int = 0
    delay: float = 0.0
    partial_delay: float = 0.0
    background: bool = False
    jobs: list[ImageJob] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    gate: asyncio.Event | None = None
    after_partials: asyncio.Event | None = None  # when set: the final image waits for it (a preview is shown first)
    in_flight: int = 0
    peak_in_flight: int = 0
    on_call: Callable[[ImageJob], None] | None = None
    closed: bool = False
    held: dict[str, ImageJob] = field(default_factory=dict)  # background responses not yet finished
    resumed: list[tuple[str, int | None]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    _stops: dict[str, asyncio.Event] = field(default_factory=dict)

    def fail_next(self, *errors: ProviderError | BaseException) -> None:
        self.failures.extend(errors)

    def forget(self, response_id: str) -> None:
        """The provider no longer holds this background response (`resume` raises `ResponseGone`)."""
        self.held.pop(response_id, None)

    async def create(self, job: ImageJob, events: ProviderEvents) -> GeneratedImage:
        self.jobs.append(job)
        number = len(self.jobs)
        response_id = f"resp_{number}"
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.background:
                self.held[response_id] = job
                await events.accepted(response_id, True)
            if self.on_call is not None:
                self.on_call(job)
            return await self._finish(number, job, events)
        finally:
            self.in_flight -= 1

    async def resume(self, response_id: str, after_seq: int | None, events: ProviderEvents) -> GeneratedImage:
        self.resumed.append((response_id, after_seq))
        job = self.held.get(response_id)
        if job is None:
            raise ResponseGone(response_id)
        return await self._finish(int(response_id.removeprefix("resp_")), job, events)

    async def cancel(self, response_id: str) -> None:
        self.cancelled.append(response_id)
        if self.held.pop(response_id, None) is not None:
            self._stops.setdefault(response_id, asyncio.Event()).set()

    async def delete(self, response_id: str) -> bool:
        made = response_id in {f"resp_{number}" for number in range(1, len(self.jobs) + 1)}
        fresh = made and response_id not in self.deleted
        self.deleted.append(response_id)
        self.held.pop(response_id, None)
        return fresh

    async def aclose(self) -> None:
        self.closed = True

    async def _wait_gate(self, response_id: str) -> None:
        """Wait for the test's gate, or for this response to be cancelled (then fail as the provider would)."""
        assert self.gate is not None
        stop = self._stops.setdefault(response_id, asyncio.Event())
        waiters = [asyncio.ensure_future(self.gate.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if stop.is_set():
            raise ProviderError("provider.cancelled", reason="cancelled")

    async def _finish(self, number: int, job: ImageJob, events: ProviderEvents) -> GeneratedImage:
        response_id = f"resp_{number}"
        seq = 0
        await events.progressed(seq, "thinking")
        if self.gate is not None:
            await self._wait_gate(response_id)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            self.held.pop(response_id, None)
            raise self.failures.pop(0)
        for index in range(self.partials):
            seq += 1
            await events.progressed(seq, "drawing")
            await events.partial(png(16, 16, (index * 40, 0, 0)), index)
            await asyncio.sleep(self.partial_delay)  # a real stream waits on the network between partials
        if self.after_partials is not None:
            await self.after_partials.wait()
        self.held.pop(response_id, None)
        colour = (number % 256, 100, 150)
        transparent = job.params.get("background") == "transparent"
        return GeneratedImage(
            image=transparent_png(64, 64, colour) if transparent else png(64, 64, colour),
            response_id=response_id,
            image_call_id=f"ig_{number}",
            revised_prompt=f"revised: {job.prompt}",
            usage=Usage(text_input_tokens=10, image_output_tokens=272),
            request_id=f"req_{number}",
        )
