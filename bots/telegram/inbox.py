"""Telegram updates through the core's durable inbox (core.inbox): recorded, handed to PTB one at a time, and
marked done once everything they started has finished.

- `record(updates)` writes a batch to the inbox (one transaction). The poller confirms a batch to Telegram (the
  next getUpdates offset) only after this returned, and the webhook answers 200 only after it; so an update
  Telegram will not deliver again is always in the database first.
- `feed(update)` queues it for PTB's `process_update`, in arrival order, on one dispatcher task. The handlers
  only spawn tasks (see bots.telegram.handlers); `claim()`, called by the adapter's spawn, ties each task to
  the update being processed (a context variable), and `release()` marks the update done when its last task
  ends: a delivered round, a refusal, an answer, or an error that was logged. Work that was cancelled (stop
  ran out of grace) is not marked done.
- `replay()` feeds what a previous run left in the inbox (at start-up). Replays are safe: rounds and moderator
  actions dedupe by idempotency key in the core. A read-only command (`/quota`, `/usage`, `/help`) that was
  being answered when the process died may be answered twice: accepted.
- An update already being handled in this process is not fed again (Telegram redelivers what was fetched but
  not confirmed before a crash, and the inbox replays it too).

Several workers on one PostgreSQL (the services' inbox is a `SharedInboxPort`): `feed` and `replay` hand
nothing to PTB directly. Whoever stored an update (the polling leader, or the worker a webhook POST reached),
every worker's claim loop claims stored updates (at most `MAX_HANDLING` at a time, `CLAIM_BATCH` per claim)
and feeds them here; a dead worker's claims are claimed again by the others. Only the leader polls
(`bots.telegram.poll.lead_by`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from telegram import Update
from telegram.ext import Application

from bots.telegram.common import TELEGRAM
from bots.telegram.poll import lead_by
from core.ports import InboxPort, SharedInboxPort

log = logging.getLogger(__name__)

MAX_HANDLING = 24  # updates one worker handles at once when workers share the inbox (the rest are left to others)
CLAIM_BATCH = 4  # updates claimed at a time: small, so that a burst spreads over the workers
CLAIM_PATIENCE = 1.0  # seconds between claims when no worker signals a new update (claims of dead workers)


@dataclass
class Entry:
    """One update being handled: its inbox key and how much of its work is still running."""

    key: str
    running: int = 1  # the dispatch itself, plus one per spawned task
    cancelled: bool = False


_CURRENT: ContextVar[Entry | None] = ContextVar("easel_telegram_update", default=None)


def inbox_key(update: Update) -> str:
    return str(update.update_id)


class InboxFeed:
    def __init__(self, services: InboxPort, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        self.services = services
        self.app = app
        self._queue: asyncio.Queue[Update | None] = asyncio.Queue()
        self._handling: set[str] = set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.shared = services if isinstance(services, SharedInboxPort) else None
        self._claims: asyncio.Task[None] | None = None
        lead_by(app.bot, self.shared.leadership if self.shared is not None else None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._dispatch_loop(), name="telegram-dispatch")
        if self.shared is not None:
            self._claims = asyncio.create_task(self._claim_loop(self.shared), name="telegram-claims")

    async def stop(self) -> None:
        """Stop dispatching. Updates still queued stay in the inbox and are replayed at the next start (with
        several workers: claimed again by the others once this worker retires)."""
        self._closing = True
        claims, self._claims = self._claims, None
        if claims is not None:
            claims.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claims
        task, self._task = self._task, None
        if task is not None:
            self._queue.put_nowait(None)
            await task

    async def idle(self) -> None:
        """Wait until every update fed so far has been through PTB (their spawned tasks may still run)."""
        await self._queue.join()

    # -- in ------------------------------------------------------------------------------------------------

    async def record(self, updates: Sequence[Update]) -> None:
        """Write the batch to the inbox in one transaction; raises if the database refused it."""
        await self.services.put(TELEGRAM, [(inbox_key(u), json.dumps(u.to_dict())) for u in updates])

    def feed(self, update: Update) -> None:
        """Handle a stored update here (one process), or leave it to whichever worker claims it."""
        if self.shared is None:
            self._feed(update)

    def _feed(self, update: Update) -> None:
        key = inbox_key(update)
        if key in self._handling or self._closing:
            return
        self._handling.add(key)
        self._queue.put_nowait(update)

    async def replay(self) -> int:
        """Feed what the inbox still holds (a crash or a stop interrupted it). Returns how many. With several
        workers the claim loop does it (a live worker's updates are not replayed)."""
        if self.shared is not None:
            return 0
        count = 0
        for payload in await self.services.pending(TELEGRAM):
            try:
                update = Update.de_json(json.loads(payload), self.app.bot)
            except Exception:  # unreadable: it expires from the inbox by itself within a day
                log.warning("an update in the inbox could not be read; skipped")
                continue
            self._feed(update)
            count += 1
        if count:
            log.warning("replaying %d Telegram updates a previous run received but did not finish", count)
        return count

    async def _claim_loop(self, shared: SharedInboxPort) -> None:
        pause = 0.0
        while not self._closing:
            room = min(CLAIM_BATCH, MAX_HANDLING - len(self._handling))
            try:
                payloads = await shared.claim(TELEGRAM, room) if room > 0 else []
            except Exception as error:
                pause = min(10.0, pause * 2 or 0.5)
                log.warning("claiming Telegram updates failed (%s); retrying in %.1f s", type(error).__name__, pause)
                await asyncio.sleep(pause)
                continue
            pause = 0.0
            for payload in payloads:
                try:
                    update = Update.de_json(json.loads(payload), self.app.bot)
                except Exception:  # unreadable: it expires from the inbox by itself within a day
                    log.warning("an update in the inbox could not be read; skipped")
                    continue
                self._feed(update)
            if room > 0 and len(payloads) == room:
                continue  # more may be waiting
            if room > 0:
                await shared.wait(CLAIM_PATIENCE)
            else:
                await asyncio.sleep(0.1)  # full: until some of this worker's updates are done

    # -- tracking ------------------------------------------------------------------------------------------

    @staticmethod
    def claim() -> Entry | None:
        """The update whose handler is running now (None outside a dispatch), counted as having one more task."""
        entry = _CURRENT.get()
        if entry is not None:
            entry.running += 1
        return entry

    async def release(self, entry: Entry | None, *, cancelled: bool = False) -> None:
        """One piece of an update's work ended; the last one marks the update done in the inbox."""
        if entry is None:
            return
        entry.running -= 1
        entry.cancelled = entry.cancelled or cancelled
        if entry.running > 0:
            return
        self._handling.discard(entry.key)
        if entry.cancelled:
            return  # left in the inbox: replayed (and deduped by the core) at the next start
        try:
            await self.services.done(TELEGRAM, entry.key)
        except Exception as error:
            log.warning("could not mark Telegram update %s handled (%s); it will be replayed at the next start",
                        entry.key, type(error).__name__)

    # -- dispatch ------------------------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            update = await self._queue.get()
            try:
                if update is None:
                    return
                if self._closing:
                    self._handling.discard(inbox_key(update))  # stays in the inbox for the next start
                    continue
                await self._dispatch(update)
            finally:
                self._queue.task_done()

    async def _dispatch(self, update: Update) -> None:
        entry = Entry(inbox_key(update))
        token = _CURRENT.set(entry)
        try:
            await self.app.process_update(update)  # handlers only filter and spawn: this is quick
        except Exception:
            log.exception("PTB could not process Telegram update %s", entry.key)
        finally:
            _CURRENT.reset(token)
        await self.release(entry)
