"""Easel's own getUpdates loop, in place of PTB's Updater, so that a batch is confirmed only once it is stored.

PTB's Updater sets the next offset as soon as it has queued a batch, so its next long poll tells Telegram the
batch arrived before any handler recorded anything: a crash at that moment lost the batch for good. Here each
batch goes to `accept` (the durable inbox, then PTB) first, and the offset that confirms it is computed only
after `accept` returned. If `accept` fails, the offset stays and Telegram sends the batch again.

Errors, as PTB's loop treats them: a timed-out poll is repeated at once; 429 waits `retry_after`; other
network or API errors back off 1 s, x1.5 per failure, at most 30 s. 409 Conflict (another poller, or a webhook
set meanwhile) and a rejected token are fatal: `on_fatal` is told once and the loop ends. `stop()` cancels the
long poll in flight (never a batch being stored) and confirms what was accepted with a last `timeout=0` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Literal

from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError, TimedOut

from bots.telegram.send import retry_after_seconds

log = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
BACKOFF_FACTOR = 1.5
MAX_BACKOFF = 30.0

Fatal = Literal["conflict", "token"]


class Poller:
    def __init__(
        self,
        bot: Bot,
        accept: Callable[[list[Update]], Awaitable[None]],
        on_fatal: Callable[[Fatal], None],
        *,
        timeout: float,
        allowed_updates: Sequence[str],
        first_backoff: float = FIRST_BACKOFF,
    ) -> None:
        self.bot = bot
        self.accept = accept
        self.on_fatal = on_fatal
        self.timeout = timeout
        self.allowed_updates = list(allowed_updates)
        self.first_backoff = first_backoff
        self.offset: int | None = None  # the first update not yet accepted (what the next poll confirms)
        self._stopping = asyncio.Event()
        self._fatal = False
        self._poll: asyncio.Task[tuple[Update, ...]] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="telegram-poll")

    async def stop(self) -> None:
        self._stopping.set()
        if self._poll is not None:
            self._poll.cancel()  # only the long poll: a batch being stored is let finish
        task, self._task = self._task, None
        if task is not None:
            await task
        if self.offset is not None and not self._fatal:
            await self._confirm()

    async def _loop(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            try:
                updates = await self._get_updates()
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self._stopping.is_set() and current is not None and not current.cancelling():
                    return  # stop() cancelled the long poll, not this loop
                raise
            except (Conflict, InvalidToken) as error:
                self._fatal = True
                self.on_fatal("conflict" if isinstance(error, Conflict) else "token")
                return
            except TimedOut:
                continue  # a long poll that outlived the read timeout: ask again at once
            except RetryAfter as error:
                await self._pause(retry_after_seconds(error))
                continue
            except Exception as error:  # NetworkError, a 5xx, or data PTB could not read
                backoff = self._next_backoff(backoff)
                log.warning("polling Telegram failed (%s); retrying in %.1f s", type(error).__name__, backoff)
                await self._pause(backoff)
                continue
            if updates:
                try:
                    await self.accept(list(updates))
                except Exception as error:
                    # Not stored, so not confirmed: Telegram sends the batch again with the next poll.
                    backoff = self._next_backoff(backoff)
                    log.warning("could not store %d Telegram updates (%s); fetching them again in %.1f s",
                                len(updates), type(error).__name__, backoff)
                    await self._pause(backoff)
                    continue
                self.offset = updates[-1].update_id + 1
            backoff = 0.0

    def _next_backoff(self, backoff: float) -> float:
        return self.first_backoff if not backoff else min(MAX_BACKOFF, backoff * BACKOFF_FACTOR)

    async def _get_updates(self) -> tuple[Update, ...]:
        """One getUpdates call as a task of its own, so that `stop()` can cancel it without cancelling us."""
        self._poll = asyncio.ensure_future(
            self.bot.get_updates(
                offset=self.offset, timeout=timedelta(seconds=self.timeout), allowed_updates=self.allowed_updates
            )
        )
        try:
            return await self._poll
        finally:
            self._poll = None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _confirm(self) -> None:
        """Tell Telegram that everything up to `offset` was received (PTB's Updater does the same on stop)."""
        try:
            await self.bot.get_updates(
                offset=self.offset, timeout=timedelta(seconds=0), allowed_updates=self.allowed_updates
            )
        except TelegramError as error:
            log.warning("could not confirm the last Telegram updates on stop (%s); they are in the inbox and "
                        "will be deduplicated when Telegram sends them again", type(error).__name__)
