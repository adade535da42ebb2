"""Whole stacks for the reliability tests: a fake platform + the real core (open_core) + the real adapter.

- `telegram_stack`: FakeTelegram, the real core, a running TelegramBot; PTB's error handlers report to
  `tg.report_error`, so a handler exception fails every `wait_for`.
- `discord_stack`: `FaultyDiscord` (FakeDiscord plus two test hooks the fake lacks: 5xx answers on a route,
  before or after executing it, and holding gateway events back to redeliver them shuffled), the real core,
  a running DiscordBot.

Builders for Telegram updates (`tg_text`, `tg_press`) make the same JSON the fake makes, without delivering
it, so a test can deliver each update as often and in whatever order it likes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from telegram import Update
from telegram.ext import ContextTypes

from bots.discord.bot import DiscordBot
from bots.process.app import Core, open_core
from bots.process.config import Settings
from bots.telegram.bot import TelegramBot
from core.ports import ImageProvider
from tests.fakes._base import Call
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_telegram import FakeTelegram
from tests.reliability.conftest import DISCORD_TOKEN, TELEGRAM_TOKEN, env_settings


@dataclass
class TelegramStack:
    tg: FakeTelegram
    core: Core
    bot: TelegramBot
    settings: Settings

    @property
    def app(self) -> Any:
        assert self.bot.application is not None
        return self.bot.application

    def tasks(self) -> set[Any]:
        """Handler tasks the adapter spawned that are still running (every round runs in one)."""
        return set(self.bot._tasks)

    async def deliver(self, update: dict[str, Any]) -> None:
        """Hand one update to the running PTB application, as its update queue would."""
        await self.app.process_update(Update.de_json(update, self.app.bot))


@asynccontextmanager
async def telegram_stack(
    data_dir: Path, *, provider: ImageProvider | None = None, openai_url: str | None = None,
    tg: FakeTelegram | None = None, **env: Any,
) -> AsyncIterator[TelegramStack]:
    async with FakeTelegram(token=TELEGRAM_TOKEN) if tg is None else _same(tg) as fake:
        extra = {"OPENAI_BASE_URL": openai_url} if openai_url else {}
        settings = env_settings(data_dir, TELEGRAM_TOKEN=TELEGRAM_TOKEN, EASEL_TELEGRAM_API_URL=fake.root,
                                **extra, **env)
        async with open_core(settings, provider=provider) as core:
            bot = TelegramBot(settings, core.services, request_timeout=5.0, stop_grace=5.0, preview_interval=0.5)
            await bot.start()
            assert bot.application is not None

            async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
                assert context.error is not None
                fake.report_error(context.error)

            bot.application.add_error_handler(on_error)
            try:
                yield TelegramStack(fake, core, bot, settings)
            finally:
                await bot.stop()


@asynccontextmanager
async def _same(fake: FakeTelegram) -> AsyncIterator[FakeTelegram]:
    yield fake


_ids = itertools.count(5_000_000)


def tg_text(chat: dict[str, Any], user: dict[str, Any] | None, text: str, *,
            reply_to: dict[str, Any] | None = None, sender_chat: dict[str, Any] | None = None,
            message_id: int | None = None) -> dict[str, Any]:
    """A message update as FakeTelegram.send_message builds it (a leading /command gets its entity)."""
    message: dict[str, Any] = {"message_id": message_id if message_id is not None else next(_ids),
                               "date": int(time.time()), "chat": dict(chat), "text": text}
    if user is not None:
        message["from"] = dict(user)
    if sender_chat is not None:
        message["sender_chat"] = dict(sender_chat)
    if reply_to is not None:
        message["reply_to_message"] = {k: v for k, v in reply_to.items() if k != "reply_to_message"}
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split(maxsplit=1)[0])}]
    return {"update_id": next(_ids), "message": message}


def tg_press(tg: FakeTelegram, user: dict[str, Any], message: dict[str, Any], data: str) -> dict[str, Any]:
    """A callback query update for a button under `message` (registered with the fake so it can be answered)."""
    query_id = f"rel-cbq-{next(_ids)}"
    tg.callbacks[query_id] = {}
    query = {"id": query_id, "from": dict(user), "message": dict(message), "chat_instance": "ci", "data": data}
    return {"update_id": next(_ids), "callback_query": query}


def api_calls(tg: FakeTelegram) -> list[Call]:
    """Calls that went through the Bot API route (the ones `tg.timeline` times), in order."""
    return [c for c in tg.calls if c.method not in ("download", "unauthorized") and not c.method.startswith("UNH")]


# ---------------------------------------------------------------------------------------------- Discord


class FaultyDiscord(FakeDiscord):
    """FakeDiscord with two hooks it does not have: `server_error_next(route, after=...)` answers 502 (before
    executing the route, or after executing it: a duplicate on retry), and `hold()` keeps INTERACTION_CREATE /
    MESSAGE_CREATE events back so the test can `release()` them (several times, shuffled)."""

    def __init__(self, **kwargs: Any) -> None:
        self.server_errors: dict[str, list[bool]] = {}
        self.holding = False
        self.held: list[tuple[str, dict[str, Any]]] = []
        super().__init__(**kwargs)

    def _store_commands(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Discord answers every application command with a `description` ("" for context-menu commands, which
        # do not send one); discord.py reads it. The base fake echoes the payload without it.
        return [{"description": "", **c} for c in super()._store_commands(commands)]

    def server_error_next(self, name: str, *, after: bool = False, times: int = 1) -> None:
        self.server_errors.setdefault(name, []).extend([after] * times)

    def _wrap(self, name: str, handler: Any) -> Callable[[web.Request], Awaitable[web.Response]]:
        inner = super()._wrap(name, handler)

        async def route(request: web.Request) -> web.Response:
            pending = self.server_errors.get(name)
            if not pending:
                return await inner(request)
            after = pending.pop(0)
            if after:
                await inner(request)
            self.record(Call(f"502 {name}", {"after": after}))
            return self._json({"message": "502: Bad Gateway", "code": 0}, status=502)

        return route

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        if self.holding and event in ("INTERACTION_CREATE", "MESSAGE_CREATE"):
            self.held.append((event, data))
            return
        await super().dispatch(event, data)

    async def release(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        for event, data in events:
            await super().dispatch(event, data)


@dataclass
class DiscordStack:
    fake: FaultyDiscord
    core: Core
    bot: DiscordBot
    settings: Settings

    def tasks(self) -> set[Any]:
        # Rounds in flight, plus discord.py's event handlers: a redelivered message is only found to be a
        # duplicate inside the round service, after the handler has shown typing and fetched the replied-to message.
        handlers = {t for t in asyncio.all_tasks() if t.get_name().startswith("discord.py: on_") and not t.done()}
        return set(self.core.rounds._tasks) | handlers


@asynccontextmanager
async def discord_stack(
    data_dir: Path, *, provider: ImageProvider | None = None, openai_url: str | None = None, **env: Any,
) -> AsyncIterator[DiscordStack]:
    fake = FaultyDiscord(token=DISCORD_TOKEN)
    async with fake:
        extra = {"OPENAI_BASE_URL": openai_url} if openai_url else {}
        settings = env_settings(data_dir, DISCORD_TOKEN=DISCORD_TOKEN, EASEL_DISCORD_API_URL=fake.api_url,
                                EASEL_DISCORD_GATEWAY_URL=fake.gateway_url, **extra, **env)
        async with open_core(settings, provider=provider) as core:
            bot = DiscordBot(settings, core.services, guild_ready_timeout=0.01)
            await bot.start()
            try:
                yield DiscordStack(fake, core, bot, settings)
            finally:
                await bot.stop()
