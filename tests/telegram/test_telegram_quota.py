"""`/quota`, `/usage`, `/help`, `/start` through the real PTB with a FakeServices: argument shapes, targets,
and who is a moderator (getChatMember, anonymous admins, never a linked channel, nobody in private)."""

from __future__ import annotations

import asyncio

import pytest

from bots.telegram.args import QuotaCommand, UsageError, parse_quota
from bots.telegram.bot import TelegramBot
from core.events import UserRef, Verb
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.telegram_support import FakeServices


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], QuotaCommand("show")),
        (["@bob"], QuotaCommand("show", user=UserRef(username="bob"))),
        (["12345"], QuotaCommand("show", user=UserRef(user_id="12345"))),
        (["show", "@bob"], QuotaCommand("show", user=UserRef(username="bob"))),
        (["set", "5"], QuotaCommand("set", 5)),
        (["set", "5", "@bob"], QuotaCommand("set", 5, UserRef(username="bob"))),
        (["SET", "0", "777"], QuotaCommand("set", 0, UserRef(user_id="777"))),
        (["grant", "3", "@bob"], QuotaCommand("grant", 3, UserRef(username="bob"))),
        (["default", "20"], QuotaCommand("default", 20)),
        (["ban"], QuotaCommand("ban")),
        (["unban", "@bob"], QuotaCommand("unban", None, UserRef(username="bob"))),
    ],
)
def test_parse_quota(args: list[str], expected: QuotaCommand) -> None:
    assert parse_quota(args) == expected


@pytest.mark.parametrize(
    "args", [["set"], ["set", "x"], ["grant", "@bob"], ["default"], ["default", "5", "@bob"], ["ban", "a", "b"],
             ["bob"], ["set", "5", "bob"], ["hello", "world"]],
)
def test_parse_quota_refuses_bad_shapes(args: list[str]) -> None:
    with pytest.raises(UsageError) as caught:
        parse_quota(args)
    assert "/quota" in str(caught.value)


async def ask(tg: FakeTelegram, chat: dict[str, object], user: dict[str, object] | None, text: str,
              count: int, **kw: object) -> str:
    await tg.send_message(chat, user, text, **kw)  # type: ignore[arg-type]
    sent = await tg.wait_for("sendMessage", count)
    assert "parse_mode" not in sent.params
    return str(sent.params["text"])


async def test_my_credits_needs_no_moderator_check(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    group = tg.group_chat()
    ann = tg.user("Ann", "ann")
    assert await ask(tg, group, ann, "/quota", 1) == "3 credits left today"
    command = fake.desk_commands[0]
    key, actor = command.key, command.actor
    assert (command.verb, command.target) == (Verb.SHOW, None)
    assert key.community == str(group["id"]) and actor.user_id == str(ann["id"])
    assert tg.calls_to("getChatMember") == []
    assert fake.seen_calls[0][0].username == "ann"


async def test_moderator_verbs_by_an_admin(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    mod, bob = tg.user("Mod"), tg.user("Bob", "bob")
    group = tg.group_chat(admins=[mod])
    bobs = await tg.send_message(group, bob, "hello")
    assert await ask(tg, group, mod, "/quota set 5", 1, reply_to=bobs) == "set 5"
    assert await ask(tg, group, mod, "/quota grant 2 @bob", 2) == "granted 2"
    assert await ask(tg, group, mod, "/quota default 20", 3) == "default 20"
    assert await ask(tg, group, mod, "/quota ban", 4, reply_to=bobs) == "banned"
    assert await ask(tg, group, mod, f"/quota unban {bob['id']}", 5) == "unbanned"
    assert await ask(tg, group, mod, "/quota @bob", 6) == "3 credits left today"
    calls = {c.verb: c for c in fake.desk_commands}
    assert calls[Verb.SET].target == UserRef(user_id=str(bob["id"]), username="bob", display_name="Bob")
    assert calls[Verb.SET].amount == 5 and calls[Verb.SET].idempotency_key.startswith(f"tg:{group['id']}:")
    assert calls[Verb.GRANT].target == UserRef(username="bob") and calls[Verb.GRANT].amount == 2
    assert calls[Verb.DEFAULT].amount == 20 and calls[Verb.DEFAULT].target is None
    target = calls[Verb.BAN].target
    assert target is not None and target.user_id == str(bob["id"])
    assert calls[Verb.UNBAN].target == UserRef(user_id=str(bob["id"]))
    assert calls[Verb.SHOW].target == UserRef(username="bob")
    assert all(c.actor.is_moderator for c in fake.desk_commands)
    # Asked of the Bot API for each command (a cache of a few seconds at most).
    checks = tg.calls_to("getChatMember")
    assert checks and checks[0].params == {"chat_id": str(group["id"]), "user_id": str(mod["id"])}
    # A reply target is remembered so moderators can later write @bob.
    assert any(a.user_id == str(bob["id"]) and a.username == "bob" for a, _ in fake.seen_calls)


async def test_creator_is_a_moderator(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    owner = tg.user("Owner")
    group = tg.group_chat(creator=owner)
    assert await ask(tg, group, owner, "/quota default 4", 1) == "default 4"
    assert fake.desk_commands[0].actor.is_moderator


async def test_moderator_verbs_by_a_member_are_refused(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    ann = tg.user("Ann")
    group = tg.group_chat(admins=[tg.user("Mod")])
    assert await ask(tg, group, ann, "/quota grant 50 @ann", 1) == "Only moderators can do that here."
    assert await ask(tg, group, ann, "/quota default 99", 2) == "Only moderators can do that here."
    # No target and not a moderator: said plainly, not "who do you mean?".
    assert (await ask(tg, group, ann, "/quota ban", 3)).startswith("Only moderators can do that here")
    assert all(not c.actor.is_moderator for c in fake.desk_commands)
    assert len(tg.calls_to("getChatMember")) >= 1


async def test_missing_target_and_bad_arguments_get_usage(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    mod = tg.user("Mod")
    group = tg.group_chat(admins=[mod])
    assert (await ask(tg, group, mod, "/quota set 5", 1)).startswith("Who do you mean?")
    assert (await ask(tg, group, mod, "/quota set lots", 2)).startswith("/quota set needs a number")
    assert fake.desk_commands == []


async def test_anonymous_admin_is_a_moderator(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    group = tg.group_chat()
    anonymous = tg.user("Group", "GroupAnonymousBot", user_id=1087968824, is_bot=True)
    assert await ask(tg, group, anonymous, "/quota default 7", 1, sender_chat=group) == "default 7"
    actor = fake.desk_commands[0].actor
    assert actor.is_moderator and actor.user_id == str(group["id"])
    assert tg.calls_to("getChatMember") == []


async def test_a_linked_channel_or_the_anonymous_bot_id_alone_is_not_a_moderator(
    tg: FakeTelegram, bot: TelegramBot, fake: FakeServices
) -> None:
    group = tg.group_chat()
    channel = {"id": -1009876, "type": "channel", "title": "Linked"}
    anonymous = tg.user("Group", "GroupAnonymousBot", user_id=1087968824, is_bot=True)
    await tg.send_message(group, anonymous, "/quota default 7", sender_chat=channel)  # posted as a channel
    await tg.send_message(group, anonymous, "/quota default 8")  # the shared id without sender_chat
    await tg.send_message(group, tg.user("Ann"), "/help")
    await tg.wait_for("sendMessage")
    assert fake.desk_commands == []


async def test_nobody_moderates_a_private_chat(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    ann = tg.user("Ann")
    chat = tg.private_chat(ann)
    assert await ask(tg, chat, ann, "/quota default 100", 1) == "Only moderators can do that here."
    assert not fake.desk_commands[0].actor.is_moderator
    assert tg.calls_to("getChatMember") == []


async def test_tapped_mention_is_a_target(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    mod, cy = tg.user("Mod"), tg.user("Cy Young")  # Cy has no username: a tap inserts a text_mention
    group = tg.group_chat(admins=[mod])
    command = {"type": "bot_command", "offset": 0, "length": 6}
    await tg.send_message(group, mod, "/quota grant 1 Cy Young", extra={"entities": [
        command, {"type": "text_mention", "offset": 15, "length": 8, "user": cy}]})
    await tg.wait_for("sendMessage")
    await tg.send_message(group, mod, "/quota ban Cy Young", extra={"entities": [
        command, {"type": "text_mention", "offset": 11, "length": 8, "user": cy}]})
    await tg.wait_for("sendMessage", 2)
    target = UserRef(user_id=str(cy["id"]), display_name="Cy Young")
    assert [(c.verb, c.target) for c in fake.desk_commands] == [(Verb.GRANT, target), (Verb.BAN, target)]


async def test_redelivered_grant_is_applied_once(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    mod = tg.user("Mod")
    group = tg.group_chat(admins=[mod])
    await ask(tg, group, mod, "/quota grant 2 @bob", 1)
    await tg.push_update(tg.last_update)
    await fake.wait_until(lambda: len(fake.desk_commands) == 2)
    await asyncio.wait_for(bot.idle(), 5)
    assert len(tg.calls_to("sendMessage")) == 1  # the redelivery is answered by nothing
    assert [c.verb for c in fake.desk_commands] == [Verb.GRANT, Verb.GRANT]
    assert fake.desk_commands[0].idempotency_key == fake.desk_commands[1].idempotency_key
    assert fake.duplicates == 1


async def test_usage_help_and_start(tg: FakeTelegram, bot: TelegramBot, fake: FakeServices) -> None:
    mod, ann = tg.user("Mod"), tg.user("Ann")
    group = tg.group_chat(admins=[mod])
    assert await ask(tg, group, ann, "/usage", 1) == "your usage"
    assert await ask(tg, group, mod, "/usage", 2) == "community usage"
    assert await ask(tg, group, ann, "/help", 3) == "help for telegram"
    assert await ask(tg, tg.private_chat(ann), ann, "/start", 4) == "help for telegram"
    assert await ask(tg, group, ann, "/help@easel_bot", 5) == "help for telegram"


async def test_moderator_check_on_its_own(tg: FakeTelegram, bot: TelegramBot) -> None:
    """ModeratorCheck by itself (the adapter also drops channel posts earlier): a channel speaking in the
    group, even a linked one, is never a moderator; the group speaking as itself is; members are asked."""
    from telegram import Message

    from bots.telegram.mods import ModeratorCheck

    assert bot.application is not None
    ptb = bot.application.bot
    admin, ann = tg.user("Admin"), tg.user("Ann")
    group = tg.group_chat(admins=[admin])
    check = ModeratorCheck(ptb, ttl=0)

    def message(**fields: object) -> Message:
        built = Message.de_json({"message_id": 1, "date": 0, "chat": group, **fields}, ptb)
        assert built is not None
        return built

    anonymous = tg.user("Group", "GroupAnonymousBot", user_id=1087968824, is_bot=True)
    channel = {"id": -1004242, "type": "channel", "title": "Linked"}
    assert await check.is_moderator(message(**{"from": anonymous, "sender_chat": group}))
    assert not await check.is_moderator(message(**{"from": anonymous, "sender_chat": channel}))
    assert await check.is_moderator(message(**{"from": admin}))
    assert not await check.is_moderator(message(**{"from": ann}))
    assert len(tg.calls_to("getChatMember")) == 2
    # Demoted: with ttl=0 the next command asks again and sees it.
    tg.chats[group["id"]].admins.clear()
    assert not await check.is_moderator(message(**{"from": admin}))
