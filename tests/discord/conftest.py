"""Fixtures for the Discord adapter tests: a FakeDiscord, a FakeServices and a running DiscordBot driven through
the real discord.py.

The `monkeypatch` on `Route.BASE` / `DEFAULT_GATEWAY` only records the originals so they are restored after
each test: the adapter itself points discord.py at the fake from `EASEL_DISCORD_API_URL` /
`EASEL_DISCORD_GATEWAY_URL`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest
from discord.gateway import DiscordWebSocket

from bots.discord.bot import DiscordBot
from bots.process.config import Settings
from tests.discord.discord_support import ErrorLog, StartBot, World, discord_services, discord_settings
from tests.discord.menu_fake import MenuDiscord
from tests.fakes.fake_discord import MANAGE_GUILD, MEMBER_PERMISSIONS, FakeDiscord
from tests.fakes.fake_services import FakeServices


@pytest.fixture
def error_log() -> AsyncIterator[ErrorLog] | Any:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    assert not handler.records, [r.getMessage() + "\n" + (r.exc_text or "") for r in handler.records]


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch, error_log: ErrorLog) -> AsyncIterator[MenuDiscord]:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", DiscordWebSocket.DEFAULT_GATEWAY)
    server = MenuDiscord()
    async with server:
        yield server
        assert not server.fake_errors, server.fake_errors
        unhandled = [c.method for c in server.calls if c.method.startswith("UNHANDLED")]
        assert not unhandled, unhandled


@pytest.fixture
async def world(fake: FakeDiscord) -> World:
    guild = await fake.guild("Painters", channels=("general", "random"))
    return World(guild, fake.member(guild, "alice"), fake.member(guild, "bob"),
                 fake.member(guild, "mod", permissions=MEMBER_PERMISSIONS | MANAGE_GUILD))


@pytest.fixture
def services() -> FakeServices:
    return discord_services()


@pytest.fixture
def settings(fake: FakeDiscord, tmp_path: Path) -> Settings:
    return discord_settings(fake, tmp_path)


@pytest.fixture
async def start_bot(settings: Settings, services: FakeServices) -> AsyncIterator[StartBot]:
    started: list[DiscordBot] = []

    async def start(services_: Any = None, settings_: Settings | None = None, **kwargs: Any) -> DiscordBot:
        bot = DiscordBot(settings_ or settings, (services_ if services_ is not None else services).services,
                         guild_ready_timeout=0.01, **kwargs)
        started.append(bot)
        await bot.start()
        return bot

    yield start
    for bot in started:
        await bot.stop()


@pytest.fixture
async def bot(world: World, start_bot: StartBot) -> DiscordBot:
    return await start_bot()
