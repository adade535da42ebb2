"""An SDK event stream is read to its end or closed in the task that read it: however a streamed call ends
(the final event read, a failure event, an exception in Easel's own handler, a dropped connection), none of
the async generators under the stream (the SDK's, httpx2's, the transport's) is left suspended for the
garbage collector, which would finalize it from whatever thread it runs in (core.provider.sse)."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from types import AsyncGeneratorType
from typing import Any

import httpx2
import pytest

from core.errors import ProviderError
from core.provider.images_api import ImagesProvider
from core.provider.responses import ResponsesProvider
from core.provider.transport import TranslatingTransport
from tests.fakes.fake_openai import FakeOpenAI, color, pixel
from tests.provider.support import Events, job


@contextmanager
def generators_started() -> Iterator[list[AsyncGeneratorType[Any, Any]]]:
    """Every async generator first iterated inside the block (through the running loop's own hooks)."""
    firstiter, finalizer = sys.get_asyncgen_hooks()
    started: list[AsyncGeneratorType[Any, Any]] = []

    def track(agen: AsyncGenerator[Any, Any]) -> None:
        assert isinstance(agen, AsyncGeneratorType)
        started.append(agen)
        if firstiter is not None:
            firstiter(agen)

    sys.set_asyncgen_hooks(firstiter=track, finalizer=finalizer)
    try:
        yield started
    finally:
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)


def suspended(started: list[AsyncGeneratorType[Any, Any]]) -> list[str]:
    """The client side's generators that have not finished (the fake server's own are not Easel's business)."""
    return [
        agen.ag_code.co_qualname
        for agen in started
        if agen.ag_frame is not None and "/tests/fakes/" not in agen.ag_code.co_filename
        and "/aiohttp/web" not in agen.ag_code.co_filename
    ]


class FailingPartials(Events):
    """Easel's own handler fails at the first preview."""

    async def partial(self, image: bytes, index: int) -> None:
        raise RuntimeError("the view broke")


async def test_images_stream_returns_at_the_final_event_and_leaves_nothing_open(
    make_images: Callable[..., ImagesProvider], partials: Events
) -> None:
    with generators_started() as started:
        result = await make_images().create(job(), partials)
    assert pixel(result.image) == color(1)
    assert partials.indexes == [0, 1]
    assert started, "the streamed call started no async generator: this test no longer sees the SDK's"
    assert suspended(started) == []


async def test_an_exception_in_easels_handler_leaves_nothing_open(make_images: Callable[..., ImagesProvider]) -> None:
    with generators_started() as started, pytest.raises(RuntimeError, match="the view broke"):
        await make_images().create(job(), FailingPartials())
    assert suspended(started) == []


@pytest.mark.parametrize("kind", ["error_event", "response_failed", "stream_drop"])
async def test_a_responses_stream_that_fails_midway_leaves_nothing_open(
    fake: FakeOpenAI, make_responses: Callable[..., ResponsesProvider], events: Events, kind: str
) -> None:
    fake.fail_next(kind, after_partials=1)
    with generators_started() as started, pytest.raises(ProviderError):
        await make_responses(retries=0).create(job(), events)
    assert started
    assert suspended(started) == []


async def test_a_background_stream_followed_to_its_end_leaves_nothing_open(
    fake: FakeOpenAI, make_background: Callable[..., ResponsesProvider], events: Events
) -> None:
    fake.fail_next("stream_drop", after_partials=1)  # the first stream breaks; the follower resumes it
    with generators_started() as started:
        result = await make_background().create(job(), events)
    assert pixel(result.image) == color(1)
    assert fake.calls_to(f"GET /v1/responses/{result.response_id}")
    assert suspended(started) == []


class _Chunks(httpx2.AsyncByteStream):
    """A body whose iterator is an async generator, as the SDK's aiohttp adapter's is."""

    def __init__(self) -> None:
        self.iterators: list[AsyncGeneratorType[bytes, None]] = []

    def __aiter__(self) -> AsyncGenerator[bytes, None]:
        iterator = self._chunks()
        assert isinstance(iterator, AsyncGeneratorType)
        self.iterators.append(iterator)
        return iterator

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        yield b"one"
        yield b"two"


class _Answers(httpx2.AsyncBaseTransport):
    def __init__(self, body: _Chunks) -> None:
        self.body = body

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=self.body, request=request)


async def test_closing_the_transports_body_closes_the_adapters_generator_with_it() -> None:
    body = _Chunks()
    transport = TranslatingTransport(_Answers(body))
    response = await transport.handle_async_request(httpx2.Request("GET", "http://127.0.0.1/"))
    assert isinstance(response.stream, httpx2.AsyncByteStream)
    chunks = aiter(response.stream)
    assert isinstance(chunks, AsyncGenerator)
    assert await anext(chunks) == b"one"
    await chunks.aclose()
    assert [iterator.ag_frame for iterator in body.iterators] == [None]  # finished, not left to the collector
