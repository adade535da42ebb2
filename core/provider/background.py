"""Following a background response to its end after its stream dropped, or after a restart.

First the stream is resumed after the last sequence number seen (`GET /v1/responses/{id}?stream=true&
starting_after=N`); when resuming keeps failing without new events, the response is polled (`GET
/v1/responses/{id}`) with a doubling wait until it is completed, failed, cancelled or incomplete. Only
reads happen here, so transient failures are simply tried again: nothing can be billed twice. A 404 means
the provider no longer holds the response: `ResponseGone`."""

from __future__ import annotations

import asyncio
import logging

import openai
from openai import AsyncOpenAI, omit

from core.errors import ResponseGone
from core.ports import GeneratedImage
from core.provider.classify import Failure, classify, unreachable
from core.provider.options import ProviderOptions
from core.provider.retries import CallContext, log_failure
from core.provider.sse import reading
from core.provider.stream import Reader

logger = logging.getLogger(__name__)

TRANSIENT = (
    openai.APIConnectionError,
    openai.InternalServerError,
    openai.RateLimitError,
    openai.APIResponseValidationError,
)


class Follower:
    def __init__(self, client: AsyncOpenAI, options: ProviderOptions, context: CallContext) -> None:
        self._client = client
        self._options = options
        self._context = context

    async def follow(self, reader: Reader, *, stream_first: bool = True) -> GeneratedImage:
        """Resume the stream (when a sequence number is known), then poll. Raises `ResponseGone`, a
        `ProviderError`, or `InBand` for a failure the response itself reports."""
        response_id = reader.response_id
        assert response_id is not None
        if stream_first and reader.last_seq is not None and self._options.partials:
            done = await self._resume_stream(reader, response_id)
            if done:
                return reader.finish()
        return await self._poll(reader, response_id)

    async def _resume_stream(self, reader: Reader, response_id: str) -> bool:
        """True once the stream reached a terminal event; False when it is time to poll instead (the stream
        ended without one, or kept breaking without new events)."""
        idle = 0
        while idle < self._options.resume_attempts:
            before = reader.last_seq
            try:
                stream = await self._client.responses.retrieve(
                    response_id,
                    stream=True,
                    starting_after=reader.last_seq if reader.last_seq is not None else omit,
                    **self._options.per_call(),
                )
                async with reading(stream) as each:
                    async for event in each:
                        await reader.on_event(event)
                # The server ended the stream: finished, or it will not stream this response any more.
                return reader.terminal
            except openai.NotFoundError:
                raise ResponseGone(response_id) from None
            except TRANSIENT as exc:
                logger.info(
                    "background stream of %s dropped after seq %s (%s, round %s)",
                    response_id,
                    reader.last_seq,
                    type(exc).__name__,
                    self._context.round_id,
                )
            except openai.APIStatusError as exc:
                raise self._fatal(exc, reader) from None
            idle = 0 if reader.last_seq != before else idle + 1
        logger.info(
            "falling back to polling %s after seq %s (round %s)", response_id, reader.last_seq, self._context.round_id
        )
        return False

    async def _poll(self, reader: Reader, response_id: str) -> GeneratedImage:
        delay = self._options.poll_interval
        failures = 0
        while True:
            try:
                response = await self._client.responses.retrieve(response_id, **self._options.per_call())
            except openai.NotFoundError:
                raise ResponseGone(response_id) from None
            except TRANSIENT as exc:
                failures += 1
                logger.info(
                    "polling %s failed (%s, %d in a row, round %s)",
                    response_id,
                    type(exc).__name__,
                    failures,
                    self._context.round_id,
                )
                if failures >= self._options.poll_failures:
                    raise unreachable() from None
            except openai.APIStatusError as exc:
                raise self._fatal(exc, reader) from None
            else:
                failures = 0
                await reader.take_response(response)
                if reader.terminal:
                    return reader.finish()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._options.max_poll_interval)

    def _fatal(self, exc: openai.APIStatusError, reader: Reader) -> Exception:
        failure: Failure = classify(exc, reader.progress, max_retry_after=self._options.max_retry_after)
        log_failure(self._context, reader.progress, failure, exc)
        return failure.error
