"""The start-up summary: the bot's link, the Discord invite with exactly the scopes and permissions Easel
needs, how to stop, and a warning when EASEL_OPERATORS is unset."""

from __future__ import annotations

import logging
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from bots.process.config import Settings
from bots.process.summary import discord_invite_url, log_startup_summary, startup_summary
from core.events import Platform


def test_links_and_how_to_stop(settings: Settings) -> None:
    lines = startup_summary(settings, "easel_test_bot", "123456789012345678")
    text = "\n".join(lines)
    assert "https://t.me/easel_test_bot" in text
    assert discord_invite_url("123456789012345678") in text
    assert "Ctrl-C" in text and "SIGTERM" in text


def test_the_invite_asks_for_exactly_what_easel_needs() -> None:
    query = parse_qs(urlsplit(discord_invite_url("42")).query)
    assert query["client_id"] == ["42"]
    assert query["scope"] == ["bot applications.commands"]
    # View Channel, Send Messages, Embed Links, Attach Files, Read Message History, Send Messages in Threads.
    assert query["permissions"] == [str(1024 + 2048 + 16384 + 32768 + 65536 + 274877906944)]
    assert query["permissions"] == ["274878024704"]


def test_only_the_platforms_that_run_are_named(settings: Settings) -> None:
    text = "\n".join(startup_summary(settings, None, "42"))
    assert "t.me" not in text and "discord.com/oauth2" in text


def test_warns_when_operators_are_unset(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("easel.test")
    with caplog.at_level(logging.INFO, logger="easel.test"):
        log_startup_summary(log, settings, "bot", None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "EASEL_OPERATORS is unset" in warnings[0]
    caplog.clear()
    with_operator = replace(settings, operators=frozenset({(Platform.TELEGRAM, "1")}))
    assert not any("EASEL_OPERATORS" in line for line in startup_summary(with_operator, "bot", None))
