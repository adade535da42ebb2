"""Easel's own retries of an image call, only where no image can have been made (a refused connection, a
429 with a short wait, a 5xx before any output). The SDK's retries are off (`max_retries=0`): a retried
generation can be billed twice."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

import openai

from core.errors import ProviderUnavailable, SafetyRefusal
from core.provider.classify import Failure, InBand, Progress, classify, stopped, timed_out

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 2
    timeout: float | None = None  # bound on one whole attempt (None: no bound of ours)
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 20.0

    def delay(self, retry: int) -> float:
        base: float = min(self.max_backoff, self.backoff * 2**retry)
        return base * random.uniform(0.75, 1.0)


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who the call is for, for the logs only."""

    round_id: int
    route: str


def _bound(timeout: float | None) -> AbstractAsyncContextManager[object]:
    return asyncio.timeout(timeout) if timeout is not None else nullcontext()


async def with_retries(policy: RetryPolicy, context: CallContext, attempt: Callable[[Progress], Awaitable[T]]) -> T:
    """Run `attempt` until it succeeds or fails in a way that must not be retried. Each attempt is bounded
    by `policy.timeout`, each wait by `max_retry_after`/`max_backoff`, their number by `retries`."""
    retry = 0
    while True:
        progress = Progress()
        try:
            async with _bound(policy.timeout):
                return await attempt(progress)
        except TimeoutError:
            # Our own deadline: the provider may still finish (and bill) the image, so never retry.
            logger.warning(
                "image call timed out after %ss (round %s, route %s, output seen: %s)",
                policy.timeout,
                context.round_id,
                context.route,
                progress.output,
            )
            raise timed_out() from None
        except InBand as signal:
            failure = signal.failure
            log_failure(context, progress, failure, None)
        except openai.APIError as exc:
            failure = classify(exc, progress, max_retry_after=policy.max_retry_after)
            log_failure(context, progress, failure, exc)
        except json.JSONDecodeError:
            # A garbled stream: part of the image may have been made, so report it and do not retry.
            logger.exception(
                "unreadable answer from the image provider (round %s, route %s, request_id %s)",
                context.round_id,
                context.route,
                progress.request_id,
            )
            raise stopped() from None
        if not failure.retryable or retry >= policy.retries:
            raise failure.error
        delay = policy.delay(retry) if failure.wait is None else max(failure.wait, policy.backoff)
        retry += 1
        logger.info(
            "retrying image call in %.2fs (retry %d of %d, round %s, route %s, request_id %s)",
            delay,
            retry,
            policy.retries,
            context.round_id,
            context.route,
            progress.request_id,
        )
        await asyncio.sleep(delay)


def log_failure(context: CallContext, progress: Progress, failure: Failure, exc: openai.APIError | None) -> None:
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "code", None) or failure.code
    kind = type(exc).__name__ if exc is not None else "in-band"
    where = (
        f"round {context.round_id}, route {context.route}, request_id {progress.request_id}, "
        f"status {status}, code {code}, {kind}"
    )
    if isinstance(failure.error, ProviderUnavailable):
        # Only the operator can fix this (key, billing, model access); the provider's own text helps them,
        # except on 401 where it may quote part of the key.
        detail = "" if status == 401 else f": {str(getattr(exc, 'message', ''))[:300]}"
        logger.error(
            "OpenAI refused Easel's account, check the API key, billing and model access (%s)%s", where, detail
        )
    elif isinstance(failure.error, SafetyRefusal):
        logger.info("provider safety refusal (%s)", where)
    else:
        logger.warning(
            "image call failed -> %s [%s]%s (%s)",
            type(failure.error).__name__,
            failure.error.msg_id,
            " (will retry)" if failure.retryable else "",
            where,
        )
