"""Easel's own getUpdates loop, in place of PTB's Updater, so that a batch is confirmed only once it is stored.

PTB's Updater sets the next offset as soon as it has queued a batch, so its next long poll tells Telegram the
batch arrived before any handler recorded anything: a crash at that moment lost the batch for good. Here each
batch goes to `accept` (the durable inbox, then PTB) first, and the offset that confirms it is computed only
after `accept` returned. If `accept` fails, the offset stays and Telegram sends the batch again.

Errors, as PTB's loop treats them: a timed-out poll is repeated at once; 429 waits `retry_after`; other
network or API errors back off 1 s, x1.5 per failure, at most 30 s. 409 Conflict (another poller, or a webhook
set meanwhile) and a rejected token are fatal: `on_fatal` is told once and the loop ends. `stop()` cancels the
long poll in flight (never a batch being stored) and confirms what was accepted with a last `timeout=0` call.

Several workers on one PostgreSQL: the inbox feed registers a leadership for the bot (`lead_by`). The poller
then polls only while this worker leads; it waits to lead before each poll, abandons a poll when the lead is
lost, and starts from Telegram's unconfirmed updates when it leads again (the inbox drops known ones). A 409
is then a previous leader's poll that has not ended yet: retried with back-off, not fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Literal
from weakref import WeakKeyDictionary

from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError, TimedOut

from bots.telegram.send import retry_after_seconds
from core.ports import Leadership

log = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
BACKOFF_FACTOR = 1.5
MAX_BACKOFF = 30.0

Fatal = Literal["conflict", "token"]

_LEADERSHIP: WeakKeyDictionary[Bot, Leadership] = WeakKeyDictionary()


def lead_by(bot: Bot, leadership: Leadership | None) -> None:
    """Poll for `bot` only while `leadership` leads (None: always, one process)."""
    if leadership is None:
        _LEADERSHIP.pop(bot, None)
    else:
        _LEADERSHIP[bot] = leadership


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
        leadership = _LEADERSHIP.get(self.bot)
        if self.offset is not None and not self._fatal and (leadership is None or leadership.leading):
            await self._confirm()

    async def _loop(self) -> None:  # noqa: PLR0912  # one branch per outcome of a poll, as PTB's loop
        backoff = 0.0
        leadership = _LEADERSHIP.get(self.bot)
        while not self._stopping.is_set():
            if leadership is not None and not leadership.leading:
                self.offset = None  # whatever was confirmed meanwhile, Telegram knows; the inbox drops repeats
                if not await self._until_leading(leadership):
                    return
            try:
                updates = await self._get_updates(leadership)
            except _LeadLost:
                log.warning("lost the Telegram polling lead; another worker polls now")
                continue
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self._stopping.is_set() and current is not None and not current.cancelling():
                    return  # stop() cancelled the long poll, not this loop
                raise
            except (Conflict, InvalidToken) as error:
                if isinstance(error, Conflict) and leadership is not None:
                    # Several workers: a previous leader's long poll that Telegram has not ended yet.
                    backoff = self._next_backoff(backoff)
                    log.warning("Telegram answered 409 Conflict (a previous poller); retrying in %.1f s", backoff)
                    await self._pause(backoff)
                    continue
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

    async def _until_leading(self, leadership: Leadership) -> bool:
        """Wait to lead; False if `stop()` came first."""
        leading = asyncio.ensure_future(leadership.wait_leading())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({leading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            leading.cancel()
            stopping.cancel()
        return not self._stopping.is_set()

    async def _get_updates(self, leadership: Leadership | None = None) -> tuple[Update, ...]:
        """One getUpdates call as a task of its own, so that `stop()` can cancel it without cancelling us. With
        a leadership, the poll is abandoned (`_LeadLost`) when the lead is lost."""
        self._poll = poll = asyncio.ensure_future(
            self.bot.get_updates(
                offset=self.offset, timeout=timedelta(seconds=self.timeout), allowed_updates=self.allowed_updates
            )
        )
        lost = asyncio.ensure_future(leadership.wait_lost()) if leadership is not None else None
        try:
            if lost is not None:
                await asyncio.wait({poll, lost}, return_when=asyncio.FIRST_COMPLETED)
                if not poll.done():
                    poll.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await poll
                    raise _LeadLost
            return await poll
        finally:
            self._poll = None
            if lost is not None:
                lost.cancel()

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


class _LeadLost(Exception):
    """This worker stopped leading while a poll was in flight."""
