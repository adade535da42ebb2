"""Telegram's flood control is per chat: after a 429 on chat X, nothing reaches X before `retry_after` has
passed (results, answers, chat actions of every round there), while other chats are not held."""

from __future__ import annotations

import pytest
from telegram.error import RetryAfter

from bots.telegram.bot import TelegramBot
from bots.telegram.send import MAX_FLOOD_WAIT, FloodGate, retry_after_seconds
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.telegram_support import FakeServices

HOLD = 0.4


async def test_a_flood_wait_holds_the_chat_for_every_send_but_not_other_chats(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    x, y = tg.group_chat("X"), tg.group_chat("Y")
    ann, bob = tg.user("Ann"), tg.user("Bob")
    tg.flood_next("sendPhoto", retry_after=HOLD)
    await tg.send_message(x, ann, "/imagine first")
    await tg.wait_for("sendPhoto")  # answered 429: chat X is held
    flooded = next(t for t in tg.timeline if t.status == 429)
    assert flooded.chat_id == str(x["id"])
    # Meanwhile more work for both chats: another round and a command in each.
    for chat in (x, y):
        await tg.send_message(chat, bob, "/imagine second")
        await tg.send_message(chat, bob, "/help")
    await fake.wait_finished(3)
    await tg.wait_for("sendMessage", 2)
    await bot.idle()

    later = [t for t in tg.timeline if t.at > flooded.at]
    to_x = [t for t in later if t.chat_id == str(x["id"])]
    to_y = [t for t in later if t.chat_id == str(y["id"])]
    assert {t.method for t in to_x} >= {"sendPhoto", "sendMessage"}
    early = [(t.method, round(t.at - flooded.at, 3)) for t in to_x if t.at - flooded.at < HOLD]
    assert early == [], early  # not even a chat action
    assert any(t.at - flooded.at < HOLD for t in to_y), "chat Y was held too"
    assert len(fake.delivered) == 3 and all(t.status == 200 for t in later)


def test_flood_gate_holds_per_chat_and_never_shortens() -> None:
    now = [100.0]
    gate = FloodGate(clock=lambda: now[0])
    gate.hold(1, 5)
    gate.hold(1, 2)  # a shorter answer does not shorten the hold
    assert gate.remaining(1) == 5 and gate.remaining(2) == 0
    now[0] += 5
    assert gate.remaining(1) == 0


async def test_a_hold_longer_than_we_wait_fails_fast() -> None:
    gate = FloodGate()
    gate.hold(7, MAX_FLOOD_WAIT + 30)
    with pytest.raises(RetryAfter) as caught:
        await gate.wait(7)
    assert retry_after_seconds(caught.value) > MAX_FLOOD_WAIT
    await gate.wait(8)  # another chat: not held
