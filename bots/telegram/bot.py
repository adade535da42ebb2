"""The Telegram adapter (python-telegram-bot 22): lifecycle, polling or webhook, and the glue to the core.

`TelegramBot(settings, studio, on_fatal=...)` is what `easel run` starts. The handlers that translate
updates into core calls live in `bots.telegram.handlers`; rendering a round lives in `bots.telegram.view`.

- Bot API root: `EASEL_TELEGRAM_API_URL` (`{root}/bot<token>/<method>`, files `{root}/file/bot<token>/<path>`).
- Polling by default (`getUpdates`, long poll) with Easel's own loop (`bots.telegram.poll`), not PTB's Updater:
  a batch is written to the durable inbox (`bots.telegram.inbox`) before the offset that confirms it is sent,
  so a crash never loses updates Telegram will not deliver again. With `EASEL_TELEGRAM_WEBHOOK_URL` set,
  `setWebhook` with the secret token instead; Easel's aiohttp server passes the webhook's requests to
  `handle_webhook`, which also records the update before answering 200.
- Start-up replays what the inbox still holds (updates a crash or a stop interrupted), in both modes.
- A bad token is fatal at start (`FatalPlatformError`); a 409 Conflict while polling (another instance uses
  the token) is fatal at any time: `on_fatal` is told once and polling stops, so two processes don't fight.
- Start-up sends the notices the core queued (e.g. rounds a restart interrupted and refunded).
- Edited messages never start rounds or commands (policy; see `bots.telegram.handlers`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from telegram import BotCommand, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError
from telegram.ext import Application, ApplicationBuilder

from bots.process.config import Settings
from bots.telegram.albums import ALBUM_WINDOW, AlbumCollector, Wait, window_wait
from bots.telegram.common import PUBLIC_GETFILE_CAP, TELEGRAM
from bots.telegram.handlers import TelegramHandlers
from bots.telegram.inbox import Entry, InboxFeed
from bots.telegram.mods import ModeratorCheck
from bots.telegram.pacing import PREVIEW_INTERVAL, EditPacer
from bots.telegram.poll import Fatal, Poller
from bots.telegram.send import FloodGate, retrying, send_text
from bots.telegram.transport import FleetRateLimiter, api_request, rate_limiter, updates_request
from bots.telegram.view import TelegramRoundView, Where
from core.errors import ConfigError, FatalPlatformError
from core.ports import Services
from core.records import Round
from core.texts import DEFAULT_LANGUAGE
from core.texts.commands import telegram_commands, telegram_languages

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# No edited_message: edits never start rounds. my_chat_member: being added to a group (EASEL_COMMUNITIES).
ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")


def command_menus() -> list[tuple[str | None, list[BotCommand]]]:
    """`(language_code, commands)` for each `setMyCommands` call: the default list (English), then one per
    other language Easel speaks. The command names are the contract's; only the descriptions change."""
    menus: list[tuple[str | None, list[BotCommand]]] = [(None, _menu(DEFAULT_LANGUAGE))]
    menus += [(lang, _menu(lang)) for lang in telegram_languages()]
    return menus


def _menu(lang: str) -> list[BotCommand]:
    return [BotCommand(name, description) for name, description in telegram_commands(lang)]

CONFLICT_MESSAGE = (
    "Telegram answered 409 Conflict: another instance is polling with this TELEGRAM_TOKEN (or a webhook was "
    "set for it). Stop the other instance; only one process may use a bot token."
)
# A message about the token, not a token.
BAD_TOKEN_MESSAGE = "Telegram rejected TELEGRAM_TOKEN (401/404). Copy the bot's token again from @BotFather."  # noqa: S105

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class TelegramBot:
    def __init__(
        self,
        settings: Settings,
        services: Services,
        *,
        on_fatal: Callable[[str], None] | None = None,
        request_timeout: float = 10.0,
        poll_timeout: float = 25.0,
        poll_retry: float = 1.0,
        preview_interval: float = PREVIEW_INTERVAL,
        moderator_ttl: float = 3.0,
        stop_grace: float = 10.0,
        album_window: float | Wait = ALBUM_WINDOW,
    ) -> None:
        if not settings.telegram_token:
            raise ConfigError("TELEGRAM_TOKEN is not set")
        self.settings = settings
        self.services = services
        self.on_fatal = on_fatal
        self.request_timeout = request_timeout
        self.poll_timeout = poll_timeout
        self.poll_retry = poll_retry  # the first back-off after a failed poll (x1.5 per failure, at most 30 s)
        self.moderator_ttl = moderator_ttl
        self.stop_grace = stop_grace  # how long stop() lets running handlers finish before cancelling them
        # How long an album's items are collected: seconds, or a wait to await (tests release it themselves).
        self.albums = AlbumCollector(window_wait(album_window) if isinstance(album_window, float | int)
                                     else album_window)
        self.flood = FloodGate()  # Telegram's flood control is per chat: one hold per chat for every send
        self.pacer = EditPacer(preview_interval, gate=self.flood)
        self.application: AnyApplication | None = None
        self._feed: InboxFeed | None = None
        self._poller: Poller | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = False
        self._fatal = False
        # httpx logs every request URL, token included, at INFO (platform-limits S-1); bots.process.logs does the
        # same for `easel run`, this covers any other embedding.
        for name in ("httpx", "httpcore"):
            if logging.getLogger(name).level < logging.WARNING:
                logging.getLogger(name).setLevel(logging.WARNING)

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def webhook_mode(self) -> bool:
        return bool(self.settings.telegram_webhook_url)

    # -- lifecycle -----------------------------------------------------------------------------------------

    def build_application(self) -> AnyApplication:
        root = self.settings.telegram_api_url.rstrip("/")
        t = self.request_timeout
        builder = (
            ApplicationBuilder()
            .token(self.settings.telegram_token or "")
            .base_url(f"{root}/bot")
            .base_file_url(f"{root}/file/bot")
            .request(api_request(t, media_write_timeout=60.0))  # uploads of large images on slow links
            .get_updates_request(updates_request(t))  # PTB adds the long-poll timeout on top
            .rate_limiter(FleetRateLimiter(self.services.fleet, rate_limiter))
            .updater(None)  # updates come through Easel's Poller or handle_webhook, and the inbox
        )
        return builder.build()

    async def start(self) -> None:
        if self.application is not None:
            raise RuntimeError("TelegramBot.start() called twice")
        app = self.build_application()
        self.application = app
        try:
            await app.initialize()  # getMe: checks the token
        except InvalidToken:
            # PTB's message quotes the token: never chain or log it.
            await self._abandon(app)
            raise FatalPlatformError(BAD_TOKEN_MESSAGE) from None
        except BaseException:
            await self._abandon(app)
            raise
        try:
            await self._connect(app)
        except InvalidToken:
            await self.stop()
            raise FatalPlatformError(BAD_TOKEN_MESSAGE) from None
        except BaseException:
            await self.stop()
            raise
        self._ready = True
        log.info("Telegram bot @%s connected (%s)", app.bot.username, "webhook" if self.webhook_mode else "polling")
        self._spawn(None, self._send_notices())

    def view_for_round(self, item: Round) -> TelegramRoundView:
        """A view for a round picked up after a restart: it answers in the round's chat, replying to the
        message that showed its progress."""
        assert self.application is not None
        chat = int(item.key.channel)
        thread = int(item.key.thread) if item.key.thread.isdigit() else None
        anchor = item.progress_message or ""
        reply = int(anchor) if anchor.isdigit() else None
        return TelegramRoundView(self.application.bot, Where(chat, thread, reply, chat < 0), self.pacer,
                                 lang=self.settings.language)  # until the core names the round's language

    async def _connect(self, app: AnyApplication) -> None:
        handlers = TelegramHandlers(
            self.settings,
            self.services,
            app.bot,
            self._spawn,
            self._report,
            self.pacer,
            ModeratorCheck(app.bot, ttl=self.moderator_ttl),
            self._download_cap(),
            self.albums,
        )
        handlers.register(app)
        for language, commands in command_menus():
            await retrying(
                lambda: app.bot.set_my_commands(commands, language_code=language),  # noqa: B023 - awaited here
                "setMyCommands",
            )
        await app.start()
        self._feed = feed = InboxFeed(self.services.inbox, app)
        feed.start()
        await feed.replay()  # what a previous run received but did not finish comes first
        if self.webhook_mode:
            await retrying(
                lambda: app.bot.set_webhook(
                    self.settings.telegram_webhook_url or "",
                    secret_token=self.settings.telegram_webhook_secret,
                    allowed_updates=ALLOWED_UPDATES,
                ),
                "setWebhook",
            )
        else:
            # Polling needs no webhook; updates pending at Telegram are kept (they may be unanswered requests).
            await retrying(lambda: app.bot.delete_webhook(drop_pending_updates=False), "deleteWebhook")
        if not self.webhook_mode:
            self._poller = Poller(app.bot, self._accept, self._polling_fatal, timeout=self.poll_timeout,
                                  allowed_updates=ALLOWED_UPDATES, first_backoff=self.poll_retry)
            self._poller.start()

    async def stop(self) -> None:
        """Stop taking updates, let running handlers finish (bounded), close the HTTP clients. Idempotent."""
        app, self.application = self.application, None
        self._ready = False
        if app is None:
            return
        try:
            poller, self._poller = self._poller, None
            if poller is not None:
                await poller.stop()
            feed, self._feed = self._feed, None
            if feed is not None:
                await feed.stop()
            if app.running:
                await app.stop()
            await self._finish_tasks()
        finally:
            await app.shutdown()

    async def idle(self) -> None:
        """Wait until every update received so far has been dealt with (rounds included). Callers bound it
        with `asyncio.timeout`."""
        while True:
            if self._feed is not None:
                await self._feed.idle()
            if not self._tasks:
                return
            await asyncio.wait(set(self._tasks))

    async def _abandon(self, app: AnyApplication) -> None:
        self.application = None
        try:
            await app.bot.shutdown()
        except Exception:
            log.debug("closing the Telegram client after a failed start", exc_info=True)

    async def _finish_tasks(self) -> None:
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.stop_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    def _download_cap(self) -> int | None:
        # The public Bot API serves files up to 20 MB; a self-hosted server has its own (much larger) limit.
        return PUBLIC_GETFILE_CAP if "api.telegram.org" in self.settings.telegram_api_url else None

    # -- updates in -----------------------------------------------------------------------------------------

    async def _accept(self, updates: list[Update]) -> None:
        """A polled batch: stored first (the poller confirms it only after this returns), then handled."""
        feed = self._feed
        if feed is None:
            raise RuntimeError("the Telegram bot is stopping")
        await feed.record(updates)
        for update in updates:
            feed.feed(update)

    def _polling_fatal(self, kind: Fatal) -> None:
        """The poller ended for good: another instance polls this token (409), or the token was revoked."""
        if self._fatal:
            return
        self._fatal = True
        self._ready = False
        message = CONFLICT_MESSAGE if kind == "conflict" else BAD_TOKEN_MESSAGE
        log.critical(message)
        if self.on_fatal is not None:
            self.on_fatal(message)

    # -- webhook -------------------------------------------------------------------------------------------

    async def handle_webhook(self, request: web.Request) -> web.Response:
        """Telegram's POST: check the secret, queue the update, answer at once (the work runs in tasks)."""
        expected = self.settings.telegram_webhook_secret or ""
        given = request.headers.get(SECRET_HEADER, "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            return web.Response(status=403)
        app, feed = self.application, self._feed
        if app is None or not app.running or feed is None:
            return web.Response(status=503)  # Telegram retries later
        try:
            update = Update.de_json(await request.json(), app.bot)
        except Exception:
            log.warning("webhook body is not a Telegram update; ignored")
            return web.Response(status=400)
        try:
            await feed.record([update])
        except Exception as error:
            log.warning("could not store a Telegram update (%s); Telegram will send it again", type(error).__name__)
            return web.Response(status=503)
        feed.feed(update)
        return web.Response(status=200)

    # -- tasks, errors, notices ----------------------------------------------------------------------------

    def _spawn(self, update: Update | None, work: Coroutine[Any, Any, None]) -> None:
        # Called by handlers while PTB processes an update: the task counts towards that update's inbox entry.
        entry = InboxFeed.claim()
        task = asyncio.create_task(self._guarded(update, work, entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, update: Update | None, work: Coroutine[Any, Any, None], entry: Entry | None) -> None:
        feed = self._feed
        try:
            await work
        except asyncio.CancelledError:
            if feed is not None:
                await feed.release(entry, cancelled=True)
            raise
        except Exception as error:
            log.exception("handling a Telegram update failed")
            await self._report(update, error)
        if feed is not None:
            await feed.release(entry)

    async def _report(self, update: Update | None, error: Exception) -> None:
        """Hand an unexpected error to PTB's error handlers, if any are registered (tests register one)."""
        app = self.application
        if app is not None and app.error_handlers:
            await app.process_error(update, error)

    async def _send_notices(self) -> None:
        app = self.application
        if app is None:
            return
        for notice in await self.services.notices.take(TELEGRAM):
            reply = int(notice.reply_to) if notice.reply_to and notice.reply_to.isdigit() else None
            thread = int(notice.key.thread) if notice.key.thread.isdigit() else None
            try:
                await send_text(app.bot, self.flood, int(notice.key.channel), notice.text, reply_to_id=reply,
                                thread_id=thread)
            except (Forbidden, BadRequest) as error:
                # The chat is gone or the bot was removed: the notice can never be delivered.
                log.warning("start-up notice %d dropped (%s)", notice.id, type(error).__name__)
            except TelegramError as error:
                log.warning("start-up notice %d not sent (%s); will retry at next start", notice.id,
                            type(error).__name__)
                continue
            await self.services.notices.sent(notice.id)
