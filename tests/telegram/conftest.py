"""Fixtures for the Telegram adapter tests: a FakeTelegram Bot API on loopback, a FakeServices (or the real core),
and a running TelegramBot driven through the real python-telegram-bot."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from telegram.ext import ContextTypes

from bots.process.config import Settings
from bots.telegram.bot import TelegramBot
from core.ports import Services
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.telegram_support import ErrorLog, FakeServices

StartBot = Callable[..., Awaitable[TelegramBot]]


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    assert not handler.records, [r.getMessage() + "\n" + (r.exc_text or "") for r in handler.records]


@pytest.fixture
async def tg(error_log: ErrorLog) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server
        assert not server.fake_errors, server.fake_errors
        unhandled = [c.method for c in server.calls if c.method.startswith("UNHANDLED")]
        assert not unhandled, unhandled


@pytest.fixture
def fake() -> FakeServices:
    return FakeServices()


@pytest.fixture
def tg_settings(tg: FakeTelegram, make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**env: Any) -> Settings:
        return make_settings(**{"TELEGRAM_TOKEN": tg.token, "EASEL_TELEGRAM_API_URL": tg.root, **env})

    return make


@pytest.fixture
def settings(tg_settings: Callable[..., Settings]) -> Settings:
    return tg_settings()


@pytest.fixture
async def start_bot(tg: FakeTelegram, settings: Settings, fake: FakeServices) -> AsyncIterator[StartBot]:
    """Start a TelegramBot (the FakeServices and the default settings unless given); every one is stopped at the
    end. Handler errors the adapter hands to PTB's error handlers fail `tg.wait_for` at once."""
    started: list[TelegramBot] = []

    async def start(
        services_: FakeServices | Services | None = None, settings_: Settings | None = None, **kwargs: Any
    ) -> TelegramBot:
        kwargs.setdefault("request_timeout", 5.0)
        kwargs.setdefault("stop_grace", 2.0)
        chosen = services_ if services_ is not None else fake  # a FakeServices or the real core's Services
        services = chosen.services if isinstance(chosen, FakeServices) else chosen
        bot = TelegramBot(settings_ or settings, services, **kwargs)
        started.append(bot)
        await bot.start()
        assert bot.application is not None

        async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
            assert context.error is not None
            tg.report_error(context.error)

        bot.application.add_error_handler(on_error)
        return bot

    yield start
    for bot in started:
        await bot.stop()


@pytest.fixture
async def bot(start_bot: StartBot) -> TelegramBot:
    return await start_bot()


@pytest.fixture
async def hook_server() -> AsyncIterator[tuple[str, list[TelegramBot]]]:
    """An aiohttp server on 127.0.0.1:0 that routes /telegram/webhook to the bot under test (as bots.process.web)."""
    holder: list[TelegramBot] = []

    async def route(request: web.Request) -> web.StreamResponse:
        if not holder:
            return web.Response(status=503)  # Telegram retries
        return await holder[0].handle_webhook(request)

    app = web.Application()
    app.router.add_post("/telegram/webhook", route)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/telegram/webhook", holder
    await runner.cleanup()
