"""Issue 16, few platform calls per round: Bot API calls per round, counted from the fake server's log (every
call addressed to the round's chat), through the real PTB. At most 3 for a round that did not wait and had no
previews, at most 4 for one that waited; no placeholder plus deletion, no chat action while queued."""

from __future__ import annotations

import asyncio

import pytest

from bots.telegram.bot import TelegramBot
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.conftest import StartBot
from tests.telegram.telegram_support import FakeServices


def round_calls(tg: FakeTelegram, chat_id: int) -> list[str]:
    return [t.method for t in tg.timeline if t.chat_id == str(chat_id)]


async def one_round(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices, group: bool) -> list[str]:
    ann = tg.user("Ann")
    chat = tg.group_chat() if group else tg.private_chat(ann)
    await tg.send_message(chat, ann, "/imagine a red kite")
    await fake.wait_finished()
    await asyncio.wait_for(bot.idle(), 5)
    calls = round_calls(tg, chat["id"])
    return calls


@pytest.mark.parametrize("group", [False, True], ids=["private", "group"])
async def test_a_round_that_did_not_wait_costs_at_most_3_calls(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices, group: bool
) -> None:
    calls = await one_round(tg, bot, fake, group)
    assert len(calls) <= 3, calls
    assert calls[-1] == "sendPhoto" and calls.count("sendPhoto") == 1
    assert "sendMessage" not in calls and "deleteMessage" not in calls


@pytest.mark.parametrize("group", [False, True], ids=["private", "group"])
async def test_a_round_that_waited_costs_at_most_4_calls(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices, group: bool
) -> None:
    fake.positions = [5, 4, 3, 2, 1]  # the queue moves within seconds: the waiting message is not edited for it
    calls = await one_round(tg, bot, fake, group)
    assert len(calls) <= 4, calls
    assert calls[0] == "sendMessage"  # the waiting message first, no chat action while queued
    assert calls[-1] == "editMessageMedia"  # which becomes the result
    assert "sendPhoto" not in calls and "deleteMessage" not in calls


async def test_a_round_with_previews(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    fake.previews = 3  # within the preview interval: only the first is shown
    calls = await one_round(tg, bot, fake, True)
    assert len(calls) <= 3, calls
    assert calls.count("sendPhoto") == 1 and calls[-1] == "editMessageMedia"  # the preview becomes the result


async def test_a_waiting_round_with_previews(tg: FakeTelegram, start_bot: StartBot, fake: FakeServices) -> None:
    bot = await start_bot(preview_interval=0)  # every preview shown
    fake.positions = [2]
    fake.previews = 2
    calls = await one_round(tg, bot, fake, False)
    # the waiting message, "working", the chat action, two previews into it, the result into it
    assert len(calls) <= 6, calls
    assert calls.count("sendMessage") == 1 and "sendPhoto" not in calls and "deleteMessage" not in calls
