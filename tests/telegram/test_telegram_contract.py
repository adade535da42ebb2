"""The Telegram pieces of the chat contract (DESIGN §4) through the real python-telegram-bot against the fake
Bot API: flags, /cancel as a reply, the Cancel button, /language, the client locale, transparent and --file
results."""

from __future__ import annotations

import asyncio

from bots.telegram.bot import TelegramBot
from core.events import Verb
from core.spec import Background, Quality, Shape
from tests.fakes.fake_provider import transparent_png
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.telegram_support import FakeServices


async def test_flags_become_options_and_leave_the_prompt(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    await tg.send_message(tg.group_chat(), tg.user("Ann"), "/imagine --size wide a fox --quality high --file")
    await fake.wait_finished()
    request = fake.requests[0]
    assert request.prompt == "a fox"
    assert (request.options.shape, request.options.quality) == (Shape("wide"), Quality("high"))
    assert request.send_file


async def test_an_unknown_flag_is_refused_at_no_cost(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    await tg.send_message(tg.group_chat(), tg.user("Ann"), "/imagine a fox --sise wide")
    sent = await tg.wait_for("sendMessage")
    text = sent.params["text"]
    assert "--sise" in text and "--size" in text and "--transparent" in text
    assert fake.requests == []


async def test_client_language_reaches_the_actor(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    ann = {**tg.user("Ann"), "language_code": "zh-hans"}
    await tg.send_message(tg.group_chat(), ann, "/imagine a fox")
    await fake.wait_finished()
    assert fake.requests[0].actor.locale == "zh-hans"


async def test_progress_message_carries_cancel_and_the_button_cancels(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    fake.positions = [2]
    fake.gate = asyncio.Event()
    group, ann = tg.group_chat(), tg.user("Ann")
    await tg.send_message(group, ann, "/imagine a slow fox")
    placeholder = await tg.wait_for("sendMessage")
    assert placeholder.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "e:cancel:1"
    await fake.wait_live()
    progress = tg.sent_messages("sendMessage")[0]
    await tg.press_button(ann, progress, "e:cancel:1")
    await fake.wait_finished(2)
    assert [p.action for p in fake.presses] == ["cancel:1"]
    assert fake.refused[-1].reason == "cancelled" and fake.delivered == []


async def test_cancel_replying_to_the_progress_message(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    fake.positions = [1]
    fake.gate = asyncio.Event()
    group, ann = tg.group_chat(), tg.user("Ann")
    await tg.send_message(group, ann, "/imagine a slow fox")
    await tg.wait_for("sendMessage")
    await fake.wait_live()
    progress = tg.sent_messages("sendMessage")[0]
    await tg.send_message(group, ann, "/cancel", reply_to=progress)
    await fake.wait_finished()
    assert [c.message_id for c in fake.cancels] == [str(progress["message_id"])]
    assert fake.refused[-1].reason == "cancelled"


async def test_cancel_without_a_reply_says_how(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    await tg.send_message(tg.group_chat(), tg.user("Ann"), "/cancel")
    sent = await tg.wait_for("sendMessage")
    assert "/cancel" in sent.params["text"] and fake.cancels == []


async def test_language_command(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    mod = tg.user("Mod")
    group = tg.group_chat(admins=[mod])
    await tg.send_message(group, mod, "/language zh")
    assert (await tg.wait_for("sendMessage")).params["text"] == "language zh"
    await tg.send_message(group, tg.user("Ann"), "/language")
    assert (await tg.wait_for("sendMessage", 2)).params["text"] == "language auto"
    commands = fake.desk_commands
    assert [(c.verb, c.language, c.actor.is_moderator) for c in commands] == [
        (Verb.LANGUAGE, "zh", True), (Verb.LANGUAGE, None, False)]


async def test_transparent_result_is_a_document_kept_as_is(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    fake.result_image = transparent_png(40, 30)
    fake.result_size = (40, 30)
    await tg.send_message(tg.group_chat(), tg.user("Ann"), "/imagine --transparent a logo")
    sent = await tg.wait_for("sendDocument")
    assert fake.requests[0].options.background is Background.TRANSPARENT
    assert sent.files["document"] == fake.result_image  # never re-encoded: the alpha stays
    assert tg.calls_to("sendPhoto") == []


async def test_file_flag_sends_the_photo_and_the_original(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    await tg.send_message(tg.group_chat(), tg.user("Ann"), "/imagine a fox --file")
    photo = await tg.wait_for("sendPhoto")
    document = await tg.wait_for("sendDocument")
    assert document.files["document"] == fake.result_image
    assert document.params["caption"] == "#1 · original PNG"
    assert photo.params["caption"].startswith("#1 · a fox")
