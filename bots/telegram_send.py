"""Sending to Telegram: flood waits (429 `retry_after`) honoured and retried, plain text only, replies that
survive a deleted target. Every send path of the adapter goes through `retrying`."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from telegram import Bot, Message, ReplyParameters
from telegram.error import RetryAfter

# Opt in to PTB's coming behaviour for time periods (timedelta, not int): without it, merely constructing
# RetryAfter (PTB does, on every 429) emits a deprecation warning. PTB reads it at each use;
# `retry_after_seconds` handles both forms.
os.environ.setdefault("PTB_TIMEDELTA", "true")

log = logging.getLogger(__name__)

T = TypeVar("T")

TEXT_LIMIT = 4096  # platform-limits T-h
CAPTION_LIMIT = 1024
MAX_FLOOD_WAITS = 3  # a send is retried after at most this many 429s...
MAX_FLOOD_WAIT = 120.0  # ...each asking us to wait no longer than this (seconds)


def retry_after_seconds(error: RetryAfter) -> float:
    value: object = error.retry_after  # a timedelta with PTB_TIMEDELTA set, else a number
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)  # type: ignore[arg-type]


async def retrying(send: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `send`, waiting out Telegram's flood control (T-d) a bounded number of times.

    Only 429s are retried: a timeout may have been delivered already (platform-limits finding 3), and other
    errors do not get better by repeating."""
    for attempt in range(MAX_FLOOD_WAITS + 1):
        try:
            return await send()
        except RetryAfter as error:
            wait = retry_after_seconds(error)
            if attempt == MAX_FLOOD_WAITS or wait > MAX_FLOOD_WAIT:
                raise
            log.warning("Telegram flood control on %s: waiting %.1f s before retrying", what, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reply_to(message_id: int | None) -> ReplyParameters | None:
    # allow_sending_without_reply: if the user deleted their message, the answer still arrives.
    return ReplyParameters(message_id, allow_sending_without_reply=True) if message_id else None


async def send_text(
    bot: Bot, chat_id: int, text: str, *, reply_to_id: int | None = None, thread_id: int | None = None
) -> Message:
    """Plain text (no parse_mode: user text can never break markup, S-9), replying when asked."""
    return await retrying(
        lambda: bot.send_message(
            chat_id,
            clip(text, TEXT_LIMIT),
            reply_parameters=reply_to(reply_to_id),
            message_thread_id=thread_id,
        ),
        "sendMessage",
    )
