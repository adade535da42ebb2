"""Reading an SDK event stream (`openai.AsyncStream`) so that nothing of it is left to the garbage collector.

Under an `AsyncStream` the SDK stacks async generators: its event iterator, the SSE decoder, httpx2's byte
iterators and the transport's body (`core.provider.transport`). Closing the stream (`async with stream`)
closes the HTTP response but not those generators: a loop that stops before the end of the stream (the
final event read, a failure event, an exception in a handler) leaves each of them suspended. The garbage
collector then finalizes them, from whichever thread it runs in (the database writer's, the image
decoder's), and asyncio closes each one in a task of its own, concurrently with the closes the outer ones
make of the inner ones; such a close, caught half-way by a collection in another thread, fails with
"async generator already executing" (the fault mix of tests/reliability/test_provider_faults.py).

`reading(stream)` is `async with stream` plus that cleanup: on the way out it closes the response, then runs
the generators to their end in the task that read them. Once the response is closed the transport's body
fails at its next read, so this neither waits for the server nor reads anything more from it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

from openai import AsyncStream

T = TypeVar("T")


@asynccontextmanager
async def reading(stream: AsyncStream[T]) -> AsyncIterator[AsyncIterator[T]]:
    """`async with reading(stream) as each: async for event in each: ...`; any way out of the loop is fine."""
    each = aiter(stream)
    try:
        yield each
    finally:
        await stream.close()
        # Whatever the generators raise now ("connection closed", an event cut in half) is about a response
        # Easel is done with; an exception already on its way out is the one that counts.
        with suppress(Exception):
            async for _ in each:
                pass
