"""Rounds through the real PTB with a FakeServices: what the adapter builds (RoundRequest fields) and how it
renders progress, results, buttons and refusals on the Bot API."""

from __future__ import annotations

import asyncio
import io
import logging
import time

import pytest
from PIL import Image

from bots.telegram.bot import TelegramBot
from core.errors import APOLOGY_ID, BadInputImage
from core.events import ChannelKey, Platform, RoundRequest
from core.outcomes import Button, Refusal, RoundInfo, RoundView
from core.texts import say
from tests.fakes.fake_provider import png
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.conftest import StartBot
from tests.telegram.telegram_support import ErrorLog, FakeServices


def key_of(chat: dict[str, object], thread: str = "") -> ChannelKey:
    return ChannelKey(Platform.TELEGRAM, str(chat["id"]), str(chat["id"]), thread)


async def sentinel(tg: FakeTelegram, chat: dict[str, object], count: int = 1) -> None:
    """Negative assertions: send /help after the update under test and wait for its answer. PTB handles
    updates in order and the adapter filters before it spawns, so everything before is decided by then."""
    await tg.send_message(chat, tg.user("Sentinel"), "/help")
    await tg.wait_for("sendMessage", count)


async def test_imagine_in_a_group(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    fake.gate = asyncio.Event()
    ann = tg.user("Ann", "ann")
    group = tg.group_chat()
    msg = await tg.send_message(group, ann, "/imagine a red fox\nin the snow")
    action = (await tg.wait_for("sendChatAction")).params  # at once, while the image is being made
    assert action["action"] == "upload_photo" and action["chat_id"] == str(group["id"])
    fake.gate.set()
    sent = await tg.wait_for("sendPhoto")

    request = fake.requests[0]
    assert request.key == key_of(group)
    assert request.actor.user_id == str(ann["id"]) and request.actor.username == "ann"
    assert not request.actor.is_moderator
    assert request.prompt == "a red fox\nin the snow"
    assert request.idempotency_key == f"tg:{group['id']}:{msg['message_id']}"
    assert request.reply_to is None and request.input_image is None

    assert sent.files["photo"] == fake.result_image
    assert sent.params["reply_parameters"] == {"message_id": msg["message_id"], "allow_sending_without_reply": True}
    assert sent.params["caption"] == "#1 · a red fox\nin the snow · 9 credits left today"
    assert "parse_mode" not in sent.params
    keyboard = sent.params["reply_markup"]["inline_keyboard"]
    assert keyboard == [[{"text": "Reroll", "callback_data": "e:reroll:1"}]]
    await fake.wait_finished()
    result = tg.sent_messages("sendPhoto")[0]
    assert fake.delivered == [[str(result["message_id"])]]


async def test_imagine_addressed_to_this_bot_or_another(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    group = tg.group_chat()
    await tg.send_message(group, tg.user("Ann"), "/imagine@other_bot not for us")
    await tg.send_message(group, tg.user("Ann"), "/imagine@easel_bot for us")
    await tg.wait_for("sendPhoto")
    assert [r.prompt for r in fake.requests] == ["for us"]


async def test_private_text_is_a_prompt_and_group_chatter_is_ignored(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    ann = tg.user("Ann")
    group = tg.group_chat()
    await tg.send_message(group, ann, "just chatting")
    await tg.send_message(tg.private_chat(ann), ann, "a blue whale")
    sent = await tg.wait_for("sendPhoto")
    assert [r.prompt for r in fake.requests] == ["a blue whale"]
    assert sent.params["chat_id"] == str(ann["id"])
    # In a private chat PTB would not quote by default: the result still replies to the prompt.
    assert "reply_parameters" in sent.params


async def test_empty_imagine_goes_to_the_core(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    await tg.send_message(tg.group_chat(), tg.user("Ann"), "/imagine")
    await tg.wait_for("sendPhoto")
    assert fake.requests[0].prompt == ""  # the core words the refusal


async def test_reply_to_an_easel_image_is_an_edit_round(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    ann, bob = tg.user("Ann"), tg.user("Bob")
    group = tg.group_chat()
    await tg.send_message(group, ann, "/imagine a castle")
    await tg.wait_for("sendPhoto")
    await fake.wait_finished()
    image = tg.sent_messages("sendPhoto")[0]
    reply = await tg.send_message(group, bob, "make it night", reply_to=image)
    sent = await tg.wait_for("sendPhoto", 2)
    request = fake.requests[1]
    assert request.reply_to == str(image["message_id"])
    assert request.prompt == "make it night" and request.actor.user_id == str(bob["id"])
    assert request.input_image is None
    assert sent.params["reply_parameters"]["message_id"] == reply["message_id"]
    # `/imagine <instruction>` replying to the image is the same thing.
    await fake.wait_finished(2)
    await tg.send_message(group, bob, "/imagine now in winter", reply_to=image)
    await tg.wait_for("sendPhoto", 3)
    assert fake.requests[2].reply_to == str(image["message_id"])


async def test_replies_that_are_not_to_a_round_are_ignored_in_groups(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    ann = tg.user("Ann")
    group = tg.group_chat()
    await tg.send_message(group, ann, "/help")
    await tg.wait_for("sendMessage")
    answer = tg.sent_messages()[0]
    await tg.send_message(group, ann, "thanks!", reply_to=answer)  # a reply to Easel's text, not an image
    other = await tg.send_message(group, tg.user("Bob"), "look at this")
    await tg.send_message(group, ann, "nice", reply_to=other)  # a reply to a person
    await sentinel(tg, group, 2)
    assert fake.requests == []


async def test_photo_with_imagine_caption_edits_that_photo(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    original = png(300, 200, (10, 200, 30))
    group = tg.group_chat()
    msg = await tg.send_message(group, tg.user("Ann"), "/imagine add a hat", photo=original)
    await tg.wait_for("sendPhoto")
    request = fake.requests[0]
    assert request.prompt == "add a hat"
    assert request.input_image is not None
    largest = msg["photo"][-1]
    assert request.input_image.declared_bytes == largest["file_size"]
    assert tg.calls_to("getFile")[0].params["file_id"] == largest["file_id"]  # not photo[0], the thumbnail
    assert fake.fetched == [original]


async def test_imagine_replying_to_a_photo_or_image_document_edits_it(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    group = tg.group_chat()
    ann, bob = tg.user("Ann"), tg.user("Bob")
    photo = await tg.send_message(group, ann, None, photo=png(40, 40, (1, 2, 3)))
    await tg.send_message(group, bob, "/imagine make it purple", reply_to=photo)
    await tg.wait_for("sendPhoto")
    doc = await tg.send_message(group, ann, "sketch", document=(png(50, 30, (9, 9, 9)), "image/png", "s.png"))
    await tg.send_message(group, bob, "/imagine ink it", reply_to=doc)
    await tg.wait_for("sendPhoto", 2)
    assert [r.prompt for r in fake.requests] == ["make it purple", "ink it"]
    assert fake.fetched == [png(40, 40, (1, 2, 3)), png(50, 30, (9, 9, 9))]
    assert all(r.reply_to is None for r in fake.requests)


async def test_private_photo_with_a_plain_caption_is_an_edit(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    ann = tg.user("Ann")
    chat = tg.private_chat(ann)
    await tg.send_message(chat, ann, "make the sky pink", photo=png(20, 20))
    await tg.wait_for("sendPhoto")
    assert fake.requests[0].prompt == "make the sky pink" and fake.requests[0].input_image is not None
    await tg.send_message(chat, ann, "/quota", photo=png(20, 20))  # another command is not a prompt
    group = tg.group_chat()
    await tg.send_message(group, ann, "my holiday", photo=png(20, 20))  # in a group: just a photo
    await sentinel(tg, group)
    assert len(fake.requests) == 1


async def test_oversized_input_is_refused_before_getfile(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    group = tg.group_chat()
    await tg.send_message(group, tg.user("Ann"), "/imagine sharpen", photo=png(20, 20), file_size=25_000_000)
    refusal = await tg.wait_for("sendMessage")
    assert refusal.params["text"] == "That image is 25.0 MB; the most I can take is 20 MB. Send a smaller one."
    assert tg.calls_to("getFile") == [] and tg.downloads == []
    assert fake.requests[0].input_image is not None
    assert fake.requests[0].input_image.declared_bytes == 25_000_000


async def test_public_api_download_cap_applies_over_max_input_bytes(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    """EASEL_MAX_INPUT_BYTES may be larger than the public Bot API's 20 MB; the fetch then caps at the API's
    limit (only for api.telegram.org), here exercised directly."""
    from bots.telegram.common import PUBLIC_GETFILE_CAP, input_image

    assert bot.application is not None
    group = tg.group_chat()
    msg = await tg.send_message(group, tg.user("Ann"), None, photo=png(8, 8), file_size=30_000_000)
    await sentinel(tg, group)
    from telegram import Message

    message = Message.de_json(msg, bot.application.bot)
    assert message is not None
    image = input_image(bot.application.bot, message, PUBLIC_GETFILE_CAP)
    assert image is not None
    try:
        await image.fetch(50_000_000)
    except BadInputImage as error:
        assert "the most I can take is 20 MB" in error.message
    else:
        raise AssertionError("a 30 MB file must be refused before getFile")
    assert tg.calls_to("getFile") == []


async def test_queue_message_becomes_the_preview_then_the_result(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    await start_bot(preview_interval=0)
    fake.positions = [3, 1]
    fake.previews = 2
    ann = tg.user("Ann")
    chat = tg.private_chat(ann)
    msg = await tg.send_message(chat, ann, "a tiny robot")
    placeholder = await tg.wait_for("sendMessage")
    assert placeholder.params["text"] == "Queued: 2 ahead of you."
    assert placeholder.params["reply_parameters"]["message_id"] == msg["message_id"]
    assert placeholder.params["reply_markup"]["inline_keyboard"][0][0]["text"] == "Cancel"
    await fake.wait_finished()
    # 3 -> 1 within 10 s of the message: not edited; then one edit when the image is being made.
    assert [c.params["text"] for c in tg.calls_to("editMessageText")] == ["Working on it…"]
    first, second, result = tg.calls_to("editMessageMedia")
    assert first.params["media"]["type"] == "photo"
    assert second.files[second.params["media"]["media"].removeprefix("attach://")] == png(16, 16, (60, 0, 0))
    assert result.files[result.params["media"]["media"].removeprefix("attach://")] == fake.result_image
    assert result.params["media"]["caption"] == "#1 · a tiny robot · 9 credits left today"
    assert result.params["reply_markup"]["inline_keyboard"] == [[{"text": "Reroll", "callback_data": "e:reroll:1"}]]
    assert tg.calls_to("sendPhoto") == [] and tg.calls_to("deleteMessage") == []  # no send plus delete
    shown = tg.messages[(chat["id"], int(placeholder_id := result.params["message_id"]))]
    assert shown["caption"].startswith("#1") and "Cancel" not in str(shown["reply_markup"])
    assert fake.delivered == [[placeholder_id]]


async def test_queue_message_is_edited_only_on_meaningful_moves_every_10_s(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    now = [1000.0]
    bot.pacer.clock = lambda: now[0]
    fake.gate = asyncio.Event()
    positions: list[int] = []

    async def script(request: RoundRequest, view: RoundView) -> None:
        await view.begin(RoundInfo(1, 1, "en", Button("Cancel", "cancel:1")))
        for position, at in ((40, 0), (39, 11), (25, 12), (25, 30), (20, 31), (14, 45), (2, 46), (1, 60)):
            now[0] = 1000.0 + at
            positions.append(position)
            await view.queued(position)
        await view.refuse(Refusal("stopped", "cancelled", ephemeral=False))

    fake.on_submit = script
    await tg.send_message(tg.private_chat(ann := tg.user("Ann")), ann, "a queue")
    await fake.wait_finished()
    edits = [c.params["text"] for c in tg.calls_to("editMessageText")]
    # 39 (a small move), 25 and 20 (within 10 s of an edit), 2 (within 10 s) are not shown.
    assert edits == ["Queued: 24 ahead of you.", "Queued: 13 ahead of you.", "Queued: you're next.", "stopped"]
    assert tg.calls_to("sendChatAction") == []  # nothing is being made while queued


async def test_refusal_is_plain_text_in_the_chat(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    fake.refusal = Refusal("You have no credits left today (*resets* at 00:00 UTC_).", "over_quota")
    group = tg.group_chat()
    msg = await tg.send_message(group, tg.user("Ann"), "/imagine a dragon")
    sent = await tg.wait_for("sendMessage")
    assert sent.params["text"] == "You have no credits left today (*resets* at 00:00 UTC_)."
    assert "parse_mode" not in sent.params
    assert sent.params["reply_parameters"]["message_id"] == msg["message_id"]
    await fake.wait_finished()
    assert tg.calls_to("sendPhoto") == []


async def test_refusal_replaces_the_queue_placeholder(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    fake.positions = [2]
    fake.refusal = Refusal("The provider's safety system declined that prompt.", "safety")
    group = tg.group_chat()
    await tg.send_message(group, tg.user("Ann"), "/imagine something")
    await fake.wait_finished()
    texts = [c.params["text"] for c in tg.calls_to("editMessageText")]
    assert texts[-1] == "The provider's safety system declined that prompt."
    assert len(tg.calls_to("sendMessage")) == 1  # only the placeholder


async def test_button_press(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    group = tg.group_chat()
    ann, bob = tg.user("Ann"), tg.user("Bob", "bobby")
    await tg.send_message(group, ann, "/imagine a kite")
    await tg.wait_for("sendPhoto")
    await fake.wait_finished()
    image = tg.sent_messages("sendPhoto")[0]
    update = await tg.press_button(bob, image, "e:reroll:1")
    answer = await tg.wait_for("answerCallbackQuery")
    assert answer.params["callback_query_id"] == update["callback_query"]["id"]
    sent = await tg.wait_for("sendPhoto", 2)
    press = fake.presses[0]
    assert press.action == "reroll:1"
    assert press.key == key_of(group)
    assert press.actor.user_id == str(bob["id"]) and press.actor.username == "bobby"
    assert press.idempotency_key == f"tg:cb:{update['callback_query']['id']}"
    assert sent.params["reply_parameters"]["message_id"] == image["message_id"]
    methods = [c.method for c in tg.calls]
    assert methods.index("answerCallbackQuery") < methods.index("sendPhoto", methods.index("answerCallbackQuery"))


async def test_messages_easel_must_ignore(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    group = tg.group_chat()
    robot = tg.user("Robot", "robot_bot", is_bot=True)
    channel = {"id": -100777, "type": "channel", "title": "News"}
    await tg.send_message(group, robot, "/imagine from a bot")
    await tg.send_message(group, tg.user("Ann"), "/imagine via a bot", via_bot=robot)
    await tg.send_message(group, tg.bot_user, "/imagine from myself")
    await tg.send_message(group, tg.user("Channel", is_bot=True), "/imagine as a channel", sender_chat=channel)
    await tg.send_message(group, tg.user("Tg", user_id=777000), "/imagine forward",
                          extra={"is_automatic_forward": True})
    await tg.send_message(group, tg.user("Ann"), "/imagine edited later", edited=True)
    await sentinel(tg, group)
    assert fake.requests == []


async def test_scheduled_message_without_id_keys_on_the_update(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    group = tg.group_chat()
    await tg.send_message(group, tg.user("Ann"), "/imagine scheduled", message_id=0)
    await tg.wait_for("sendPhoto")
    assert fake.requests[0].idempotency_key == f"tg:u:{tg.last_update['update_id']}"


async def test_redelivered_update_keeps_its_key(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    group = tg.group_chat()
    await tg.send_message(group, tg.user("Ann"), "/imagine once")
    update = tg.last_update
    await tg.wait_for("sendPhoto")
    await fake.wait_finished()
    await tg.push_update(update)  # same update_id, same message: Telegram redelivers after a crash
    await fake.wait_finished(2)
    assert fake.requests[0].idempotency_key == fake.requests[1].idempotency_key  # the core dedupes
    assert fake.duplicates == 1 and len(tg.calls_to("sendPhoto")) == 1


async def test_forum_topic_round_stays_in_its_topic(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    fake.gate = asyncio.Event()
    forum = tg.group_chat(forum=True)
    await tg.send_message(forum, tg.user("Ann"), "/imagine topic art", thread_id=42)
    await tg.wait_for("sendChatAction")
    fake.gate.set()
    sent = await tg.wait_for("sendPhoto")
    assert fake.requests[0].key == key_of(forum, "42")
    assert sent.params["message_thread_id"] == "42"
    assert tg.calls_to("sendChatAction")[0].params["message_thread_id"] == "42"


async def test_migration_moves_the_community(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    group = tg.group_chat(supergroup=False)
    new = await tg.migrate(group, tg.user("Owner"))
    await fake.wait_until(lambda: bool(fake.migrations))
    assert fake.migrations == [(Platform.TELEGRAM, str(group["id"]), str(new["id"]))]


async def test_flood_wait_is_respected_and_the_photo_sent(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    tg.flood_next("sendPhoto", retry_after=0.05)
    group = tg.group_chat()
    await tg.send_message(group, tg.user("Ann"), "/imagine busy day")
    await tg.wait_for("sendPhoto", 2)
    await fake.wait_finished()
    sends = [t for t in tg.timeline if t.method == "sendPhoto"]
    assert [t.status for t in sends] == [429, 200]
    assert sends[1].at - sends[0].at >= 0.05
    assert len(fake.delivered) == 1


async def test_oversized_output_is_reencoded_to_fit(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    fake.result_image = png(9800, 300, (120, 30, 200))
    fake.result_size = (9800, 300)  # width + height > 10000: Telegram would refuse the photo
    await tg.send_message(tg.group_chat(), tg.user("Ann"), "/imagine a mural")
    sent = await tg.wait_for("sendPhoto")
    with Image.open(io.BytesIO(sent.files["photo"])) as image:
        assert sum(image.size) <= 10_000 and image.format == "JPEG"
    assert [t.status for t in tg.timeline if t.method == "sendPhoto"] == [200]


async def test_output_that_cannot_be_fitted_goes_as_a_document(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    await start_bot()
    fake.result_image = b"\x89PNG\r\n\x1a\nnot really" + b"\0" * (11 * 1024 * 1024)
    fake.result_size = (1024, 1024)
    await tg.send_message(tg.group_chat(), tg.user("Ann"), "/imagine huge")
    sent = await tg.wait_for("sendDocument")
    assert sent.files["document"] == fake.result_image
    assert sent.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "e:reroll:1"
    await fake.wait_finished()
    assert len(fake.delivered) == 1


async def test_a_slow_round_does_not_hold_up_other_chats(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    gate = asyncio.Event()

    async def slow_then_fast(request: RoundRequest, view: RoundView) -> None:
        if request.prompt == "slow":
            await gate.wait()
        await fake.play(request, view)

    fake.on_submit = slow_then_fast
    started = time.monotonic()
    await tg.send_message(tg.group_chat(), tg.user("Ann"), "/imagine slow")
    await tg.send_message(tg.group_chat(), tg.user("Bob"), "/imagine fast")
    first = await tg.wait_for("sendPhoto")
    assert first.params["caption"].startswith("#1 · fast")
    gate.set()
    await tg.wait_for("sendPhoto", 2)
    assert time.monotonic() - started < 2


async def test_edited_messages_never_start_rounds_even_if_delivered(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    """Polling never asks for edits (allowed_updates); should one arrive anyway (a webhook set by another tool,
    a self-hosted server), the handlers still take new messages only."""
    from telegram import Update

    assert bot.application is not None
    group = tg.group_chat()
    ann = tg.user("Ann")
    edited = {"message_id": 77, "date": 0, "edit_date": 1, "chat": group, "from": ann, "text": "/imagine edited",
              "entities": [{"type": "bot_command", "offset": 0, "length": 8}]}
    await bot.application.process_update(Update.de_json({"update_id": 901, "edited_message": edited},
                                                        bot.application.bot))
    private = dict(edited, chat=tg.private_chat(ann), text="an edited prompt", entities=[])
    await bot.application.process_update(Update.de_json({"update_id": 902, "edited_message": private},
                                                        bot.application.bot))
    await bot.idle()
    assert fake.requests == []


async def test_unexpected_errors_get_the_generic_apology_never_their_text(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices, error_log: ErrorLog
) -> None:
    async def broken(request: RoundRequest, view: RoundView) -> None:
        raise RuntimeError("db password is hunter2")

    fake.on_submit = broken
    group = tg.group_chat()
    bot.application.error_handlers.clear()  # type: ignore[union-attr]  # this error is expected, not a test failure
    await tg.send_message(group, tg.user("Ann"), "/imagine anything")
    sent = await tg.wait_for("sendMessage")
    assert sent.params["text"] == say("en", APOLOGY_ID)
    await bot.idle()
    logged = error_log.take()
    assert logged and "hunter2" not in sent.params["text"]
    assert all("hunter2" not in r.getMessage() or r.exc_info for r in logged)


async def test_no_log_line_carries_the_token(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices, caplog: pytest.LogCaptureFixture
) -> None:
    """A photo edit downloads through `{root}/file/bot<token>/...`; nothing Easel or the libraries log at
    INFO or above may show that URL or the token (platform-limits S-1)."""
    caplog.set_level(logging.INFO)
    group = tg.group_chat()
    await tg.send_message(group, tg.user("Ann"), "/imagine brighter", photo=png(30, 30))
    await tg.wait_for("sendPhoto")
    await bot.idle()
    assert fake.fetched and tg.downloads
    secret = tg.token.split(":", 1)[1]
    assert caplog.records
    ours = [r for r in caplog.records if not r.name.startswith("aiohttp.access")]  # the fake server's own log
    assert not [r.getMessage() for r in ours if secret in r.getMessage()]


async def test_reply_resolves_the_round_from_the_reroll_button(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    ann = tg.user("Ann")
    group = tg.group_chat()
    await tg.send_message(group, ann, "/imagine a lighthouse")
    await tg.wait_for("sendPhoto")
    await fake.wait_finished()
    image = tg.sent_messages("sendPhoto")[0]
    fake.round_messages.clear()  # as if the reply came before the core recorded the image's message
    await tg.send_message(group, ann, "at dusk", reply_to=image)
    await tg.wait_for("sendPhoto", 2)
    request = fake.requests[1]
    assert request.parent_round == 1 and request.reply_to == str(image["message_id"])

    # Without a Reroll button, the core is asked about the message id: reply_to only.
    await fake.wait_finished(2)
    bare = tg.sent_messages("sendPhoto")[1]
    tg.messages[(group["id"], bare["message_id"])].pop("reply_markup")
    fake.round_messages.add((key_of(group), str(bare["message_id"])))
    await tg.send_message(group, ann, "in fog", reply_to=tg.messages[(group["id"], bare["message_id"])])
    await tg.wait_for("sendPhoto", 3)
    assert fake.requests[2].parent_round is None and fake.requests[2].reply_to == str(bare["message_id"])
