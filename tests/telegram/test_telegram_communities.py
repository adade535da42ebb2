"""EASEL_COMMUNITIES on Telegram, through the real PTB: in a group it does not list, Easel says once that it is
private and leaves (a message there, or being added there); operators are served anywhere."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bots.process.config import Settings
from core.texts import say
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.conftest import StartBot
from tests.telegram.telegram_support import FakeServices


async def test_unlisted_group_is_told_once_and_left(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], start_bot: StartBot, fake: FakeServices
) -> None:
    listed = tg.group_chat("Listed")
    unlisted = tg.group_chat("Elsewhere")
    ann = tg.user("Ann")
    ann["language_code"] = "zh-hans"
    bot = await start_bot(settings_=tg_settings(EASEL_COMMUNITIES=f"telegram:{listed['id']}"))
    await tg.send_message(unlisted, ann, "/imagine a cat")
    await tg.send_message(unlisted, ann, "/quota")  # before Easel has left: still only one answer
    goodbye = await tg.wait_for("sendMessage")
    assert goodbye.params["chat_id"] == str(unlisted["id"])
    assert goodbye.params["text"] == say("zh", "service.private")  # in the sender's language
    await tg.wait_for("leaveChat")
    assert tg.left_chats == [unlisted["id"]]
    await tg.send_message(listed, ann, "/imagine a dog")
    await tg.wait_for("sendPhoto")
    await asyncio.wait_for(bot.idle(), 5)
    assert [r.prompt for r in fake.requests] == ["a dog"] and fake.desk_commands == []
    assert len(tg.calls_to("sendMessage")) == 1


async def test_added_to_an_unlisted_group_leaves_unless_an_operator_added_it(
    tg: FakeTelegram, tg_settings: Callable[..., Settings], start_bot: StartBot, fake: FakeServices
) -> None:
    owner = tg.user("Owner")
    settings = tg_settings(EASEL_COMMUNITIES="telegram:-1", EASEL_OPERATORS=f"telegram:{owner['id']}")
    bot = await start_bot(settings_=settings)
    stranger = tg.user("Stranger")
    theirs, ours = tg.group_chat("Theirs"), tg.group_chat("Ours")
    await tg.add_bot(theirs, stranger)
    text = await tg.wait_for("sendMessage")
    assert text.params["chat_id"] == str(theirs["id"]) and text.params["text"] == say("en", "service.private")
    await tg.wait_for("leaveChat")
    await tg.add_bot(ours, owner)  # an operator may take the bot anywhere
    await tg.send_message(ours, owner, "/imagine an owl")
    await tg.wait_for("sendPhoto")
    await asyncio.wait_for(bot.idle(), 5)
    assert tg.left_chats == [theirs["id"]] and [r.prompt for r in fake.requests] == ["an owl"]
