"""`/usage` through the real PTB: per-user figures (`Notice.detail`) reach only the moderator who asked: in a
private message from a group (totals only when they never started the bot), inline in a private chat."""

from __future__ import annotations

from core.events import DeskCommand, Verb
from core.outcomes import Notice
from core.texts import say
from tests.fakes.fake_services import default_desk_notice
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.conftest import StartBot
from tests.telegram.telegram_support import FakeServices


def usage_with_detail(command: DeskCommand) -> Notice:
    if command.verb is Verb.USAGE and command.actor.is_moderator:
        return Notice("12 images in this chat today", detail="Ann: 7 · Bob: 5")
    return default_desk_notice(command)


async def test_usage_detail_goes_to_the_moderator_privately(
    tg: FakeTelegram, start_bot: StartBot, fake: FakeServices
) -> None:
    fake.desk_notice = usage_with_detail
    await start_bot()
    mod, other = tg.user("Mod"), tg.user("Other")
    tg.private_chat(mod)  # the moderator has started the bot
    group = tg.group_chat(admins=[mod, other])
    await tg.send_message(group, mod, "/usage")
    first = await tg.wait_for("sendMessage")
    answer = await tg.wait_for("sendMessage", 2)
    assert first.params["chat_id"] == str(mod["id"]) and first.params["text"] == "Ann: 7 · Bob: 5"
    assert answer.params["chat_id"] == str(group["id"])
    assert answer.params["text"] == "12 images in this chat today\n\n" + say("en", "tg.usage.detail_sent")

    # A moderator who never started the bot: Telegram answers 403, the group gets the totals only.
    await tg.send_message(group, other, "/usage")
    answer = await tg.wait_for("sendMessage", 4)  # the third is the refused private message
    assert answer.params["chat_id"] == str(group["id"])
    assert answer.params["text"] == "12 images in this chat today\n\n" + say(
        "en", "tg.usage.detail_needs_start", bot="easel_bot"
    )
    assert "Ann: 7" not in answer.params["text"]
    assert [c.status for c in tg.timeline if c.method == "sendMessage"] == [200, 200, 403, 200]


async def test_usage_detail_inline_in_a_private_chat(tg: FakeTelegram, start_bot: StartBot, fake: FakeServices) -> None:
    await start_bot()
    ann = tg.user("Ann")
    chat = tg.private_chat(ann)
    fake.desk_notice = lambda c: Notice("3 images here today", detail="Ann: 3")
    await tg.send_message(chat, ann, "/usage")
    answer = await tg.wait_for("sendMessage")
    assert answer.params["text"] == "3 images here today\n\nAnn: 3"
    assert len(tg.calls_to("sendMessage")) == 1
