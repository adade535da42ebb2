"""A private chat with Easel is never silent (through the real PTB): an unknown command, a file that is not an
image, a sticker, a photo (or an album) without a caption each get a one-line hint in the user's language."""

from __future__ import annotations

import asyncio

from bots.telegram.bot import TelegramBot
from core.texts import say
from tests.fakes.fake_provider import png
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.conftest import StartBot
from tests.telegram.telegram_support import FakeServices


async def test_private_chat_hints(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    ann = tg.user("Ann")
    chat = tg.private_chat(ann)
    expected = []

    async def hint(msg_id: str, **params: object) -> None:
        expected.append(say("en", msg_id, **params))
        answer = await tg.wait_for("sendMessage", len(expected))
        assert answer.params["text"] == expected[-1]
        assert answer.params["reply_parameters"]["message_id"] == tg.last_update["message"]["message_id"]

    await tg.send_message(chat, ann, "/draw a cat")
    await hint("tg.private.unknown_command", command="/draw")
    await tg.send_message(chat, ann, "my notes", document=(b"%PDF-1.4", "application/pdf", "notes.pdf"))
    await hint("tg.private.not_an_image")
    await tg.send_message(chat, ann, None, photo=png(20, 20))
    await hint("tg.private.photo_without_caption")
    await tg.send_message(chat, ann, None, extra={"sticker": {
        "file_id": "st1", "file_unique_id": "ust1", "type": "regular", "width": 512, "height": 512,
        "is_animated": False, "is_video": False}})
    await hint("tg.private.sticker")
    assert fake.requests == []


async def test_private_hint_in_the_users_language_and_album_without_caption(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    async def window() -> None:
        await asyncio.sleep(0)

    await start_bot(album_window=window)
    ann = tg.user("Ann")
    ann["language_code"] = "zh-hans"
    chat = tg.private_chat(ann)
    await tg.send_message(chat, ann, "/nonsense")
    answer = await tg.wait_for("sendMessage")
    assert answer.params["text"] == say("zh", "tg.private.unknown_command", command="/nonsense")
    await tg.send_message(chat, ann, None, photo=png(20, 20), extra={"media_group_id": "a1"})
    answer = await tg.wait_for("sendMessage", 2)
    assert answer.params["text"] == say("zh", "tg.private.photo_without_caption")
    assert fake.requests == []


async def test_groups_stay_quiet(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    group = tg.group_chat()
    ann = tg.user("Ann")
    await tg.send_message(group, ann, "/draw a cat")
    await tg.send_message(group, ann, None, photo=png(20, 20))
    await tg.send_message(group, ann, "/help")
    answer = await tg.wait_for("sendMessage")
    assert answer.params["text"] == "help for telegram"
    await asyncio.wait_for(bot.idle(), 5)
    assert len(tg.calls_to("sendMessage")) == 1
