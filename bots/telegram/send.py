"""Sending to Telegram: flood waits (429 `retry_after`) honoured and retried, plain text only, replies that
survive a deleted target.

Telegram's flood control is per chat: after a 429 on chat X, any request to X before `retry_after` has passed
fails again (and may lengthen the wait). So a 429 holds the whole chat, not just the send that met it:
`FloodGate` keeps a monotonic deadline per chat, every send to a chat goes through `FloodGate.send` (which
waits for the chat's deadline, then retries a bounded number of times), and optional progress (chat actions,
previews, placeholder edits) is skipped while the chat is held. Calls not addressed to a chat use `retrying`."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
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
    """Run `send` (a call not addressed to a chat), waiting out Telegram's flood control (T-d) a bounded number
    of times.

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


class FloodGate:
    """Per-chat flood holds: a monotonic deadline per chat id, set from 429s, that sends to the chat wait for."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._until: dict[int, float] = {}

    def hold(self, chat_id: int, seconds: float) -> None:
        """Telegram asked us to leave `chat_id` alone for `seconds` (never shortens a longer hold)."""
        now = self.clock()
        until = now + seconds
        if until > self._until.get(chat_id, -math.inf):
            self._until[chat_id] = until
        if len(self._until) > 10_000:  # forget holds that ran out
            self._until = {chat: t for chat, t in self._until.items() if t > now}

    def remaining(self, chat_id: int) -> float:
        """Seconds until `chat_id` may be sent to again (0 when it is not held)."""
        until = self._until.get(chat_id)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._until[chat_id]
            return 0.0
        return left

    async def wait(self, chat_id: int) -> None:
        """Wait out the chat's hold. A hold longer than MAX_FLOOD_WAIT is not waited for: RetryAfter, as if
        Telegram had answered so (it would)."""
        while (left := self.remaining(chat_id)) > 0:  # a loop: the hold may grow while we sleep
            if left > MAX_FLOOD_WAIT:
                raise RetryAfter(timedelta(seconds=math.ceil(left)))
            await asyncio.sleep(left)

    async def send(self, chat_id: int, send: Callable[[], Awaitable[T]], what: str) -> T:
        """Run `send` (addressed to `chat_id`) once the chat is not held; on a 429 hold the chat for everyone and
        retry, a bounded number of times (see `retrying`)."""
        for attempt in range(MAX_FLOOD_WAITS + 1):
            await self.wait(chat_id)
            try:
                return await send()
            except RetryAfter as error:
                wait = retry_after_seconds(error)
                self.hold(chat_id, wait)
                if attempt == MAX_FLOOD_WAITS or wait > MAX_FLOOD_WAIT:
                    raise
                log.warning("Telegram flood control on %s: chat held for %.1f s, then retried", what, wait)
        raise AssertionError("unreachable")  # pragma: no cover


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reply_to(message_id: int | None) -> ReplyParameters | None:
    # allow_sending_without_reply: if the user deleted their message, the answer still arrives.
    return ReplyParameters(message_id, allow_sending_without_reply=True) if message_id else None


async def send_text(
    bot: Bot, gate: FloodGate, chat_id: int, text: str, *, reply_to_id: int | None = None,
    thread_id: int | None = None, reply_markup: InlineKeyboardMarkup | None = None,
) -> Message:
    """Plain text (no parse_mode: user text can never break markup, S-9), replying when asked."""
    return await gate.send(
        chat_id,
        lambda: bot.send_message(
            chat_id,
            clip(text, TEXT_LIMIT),
            reply_parameters=reply_to(reply_to_id),
            message_thread_id=thread_id,
            reply_markup=reply_markup,
        ),
        "sendMessage",
    )
