"""Authorisation matrix: every moderator verb (show someone else's credits, set, grant, default, ban, unban)
by every kind of principal on both platforms, through the real adapter and the real core, against an
expected allow/deny table. An allowed verb changes the database (except show) and answers; a denied one
answers with the moderator refusal and leaves every table byte-for-byte unchanged; an ignored sender (a
linked channel's post) gets no answer at all and changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.texts import say
from tests.fakes.fake_discord import MANAGE_GUILD, MEMBER_PERMISSIONS, FakeUser
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.fake_telegram import ANONYMOUS_ADMIN_ID
from tests.reliability.conftest import dump_db, settle, write_summary
from tests.reliability.stacks import discord_stack, telegram_stack, tg_text

NOT_MODERATOR = say("en", "desk.not_moderator")
VERBS = ("show", "set", "grant", "default", "ban", "unban")
ALLOW, DENY, IGNORE = "allow", "deny", "ignore"

TELEGRAM_EXPECTED = {
    "creator": ALLOW, "administrator": ALLOW, "anonymous_admin": ALLOW, "operator": ALLOW,
    "private_operator": ALLOW, "member": DENY, "admin_of_other_group": DENY, "private_chat_user": DENY,
    "linked_channel_post": IGNORE, "anonymous_bot_in_private_chat": IGNORE,
}
DISCORD_EXPECTED = {
    "owner": ALLOW, "manage_server_admin": ALLOW, "operator": ALLOW, "dm_operator": ALLOW,
    "member": DENY, "admin_of_other_guild": DENY, "dm_user": DENY,
}
TG_OPERATOR, TG_PRIVATE_OPERATOR = 424242, 434343
DC_OPERATOR, DC_DM_OPERATOR = 900000000000000001, 900000000000000002


def _tg_command(verb: str, target: int) -> str:
    return {"show": f"/quota {target}", "set": f"/quota set 5 {target}", "grant": f"/quota grant 3 {target}",
            "default": "/quota default 7", "ban": f"/quota ban {target}", "unban": f"/quota unban {target}"}[verb]


@pytest.mark.usefixtures("unpaced_groups")
async def test_telegram_moderator_matrix(tmp_path: Path) -> None:
    env: dict[str, Any] = {"EASEL_OPERATORS": f"telegram:{TG_OPERATOR},telegram:{TG_PRIVATE_OPERATOR}"}
    async with telegram_stack(tmp_path / "data", provider=FakeProvider(), **env) as s:
        tg = s.tg
        creator, admin, member, target = (tg.user(n, n.lower()) for n in ("Creator", "Admin", "Member", "Target"))
        other_admin = tg.user("Elsewhere", "elsewhere")
        operator = tg.user("Operator", "operator", user_id=TG_OPERATOR)
        private_operator = tg.user("PrivOp", "privop", user_id=TG_PRIVATE_OPERATOR)
        loner = tg.user("Loner", "loner")
        group = tg.group_chat("Main", creator=creator, admins=[admin])
        tg.group_chat("Other", admins=[other_admin])
        channel = {"id": -1_009_999_000_001, "type": "channel", "title": "Linked channel"}
        anon_bot = tg.user("Group", "GroupAnonymousBot", user_id=ANONYMOUS_ADMIN_ID, is_bot=True)
        channel_bot = tg.user("Telegram", "Channel_Bot", user_id=136817688, is_bot=True)
        who: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]] = {
            "creator": (group, creator, None), "administrator": (group, admin, None),
            "member": (group, member, None), "admin_of_other_group": (group, other_admin, None),
            "operator": (group, operator, None), "anonymous_admin": (group, anon_bot, group),
            "linked_channel_post": (group, channel_bot, channel),
            "private_chat_user": (tg.private_chat(loner), loner, None),
            "private_operator": (tg.private_chat(private_operator), private_operator, None),
            "anonymous_bot_in_private_chat": (tg.private_chat(anon_bot), anon_bot, None),
        }
        for chat, user, sender in who.values():  # every principal is known to the core before the matrix
            await s.deliver(tg_text(chat, user, "/help", sender_chat=sender))
        await settle(s.tasks)
        outcome: dict[tuple[str, str], str] = {}
        for principal, (chat, user, sender) in who.items():
            for verb in VERBS:
                before = dump_db(s.settings.db_path)
                update = tg_text(chat, user, _tg_command(verb, target["id"]), sender_chat=sender)
                await s.deliver(update)
                await settle(s.tasks)
                after = dump_db(s.settings.db_path)
                answers = [c.params["text"] for c in tg.calls_to("sendMessage")
                           if c.params.get("reply_parameters", {}).get("message_id") == update["message"]["message_id"]]
                outcome[(principal, verb)] = _judge(verb, answers, before, after)
    _check("telegram", TELEGRAM_EXPECTED, outcome)


async def test_discord_moderator_matrix(tmp_path: Path) -> None:
    env = {"EASEL_OPERATORS": f"discord:{DC_OPERATOR},discord:{DC_DM_OPERATOR}"}
    async with discord_stack(tmp_path / "data", provider=FakeProvider(), **env) as s:
        fake = s.fake
        guild = await fake.guild("Main")
        other = await fake.guild("Other")
        admin = fake.member(guild, "admin", permissions=MEMBER_PERMISSIONS | MANAGE_GUILD)
        member = fake.member(guild, "member")
        target = fake.member(guild, "target")
        elsewhere = fake.member(other, "elsewhere", permissions=MEMBER_PERMISSIONS | MANAGE_GUILD)
        fake.member(guild, "elsewhere", user=elsewhere.user)  # a plain member here
        operator = fake.member(guild, "operator", user=_known(fake, DC_OPERATOR, "operator"))
        dm_user, dm_operator = fake.user("dm-user"), _known(fake, DC_DM_OPERATOR, "dm-operator")
        owner = guild.members[fake.owner.id]
        who: dict[str, tuple[Any, Any]] = {
            "owner": (guild.channel, owner), "manage_server_admin": (guild.channel, admin),
            "member": (guild.channel, member), "admin_of_other_guild": (guild.channel, elsewhere.user),
            "operator": (guild.channel, operator), "dm_user": (fake.dm_channel(dm_user), dm_user),
            "dm_operator": (fake.dm_channel(dm_operator), dm_operator),
        }
        outcome: dict[tuple[str, str], str] = {}
        for channel, user in who.values():  # own credits: the answer comes after the core has seen the user
            asked = await fake.slash_command(channel, user, "quota", subcommand="show")
            await fake.wait_until(lambda: bool(fake.replies(asked)), what="warm-up")
        for principal, (channel, user) in who.items():
            for verb in VERBS:
                options: dict[str, Any] = {"user": target.user if channel.is_dm else target}
                if verb == "set":
                    options["daily"] = 5
                elif verb == "grant":
                    options["credits"] = 3
                elif verb == "default":
                    options = {"daily": 7}
                before = dump_db(s.settings.db_path)
                interaction = await fake.slash_command(channel, user, "quota", options, subcommand=verb)
                await fake.wait_until(lambda: bool(fake.replies(interaction)), what=f"{principal} {verb}")
                await settle(s.tasks)
                after = dump_db(s.settings.db_path)
                outcome[(principal, verb)] = _judge(verb, [m["content"] for m in fake.replies(interaction)],
                                                    before, after)
    _check("discord", DISCORD_EXPECTED, outcome)


def _known(fake: Any, user_id: int, name: str) -> FakeUser:
    """A user with a fixed id (EASEL_OPERATORS is read before the fake hands out ids)."""
    user = FakeUser(user_id, name)
    fake.users[user_id] = user
    return user


def _judge(verb: str, answers: list[str], before: Any, after: Any) -> str:
    if not answers:
        return IGNORE if before == after else "changed-silently"
    if len(answers) != 1:
        return f"answered {len(answers)} times"
    if answers[0] == NOT_MODERATOR:
        return DENY if before == after else "denied-but-changed"
    if verb == "show":
        return ALLOW if " has " in answers[0] and before == after else f"show: {answers[0][:60]}"
    return ALLOW if before != after else f"allowed-but-unchanged: {answers[0][:60]}"


def _check(platform: str, expected: dict[str, str], outcome: dict[tuple[str, str], str]) -> None:
    table = {principal: {verb: outcome[(principal, verb)] for verb in VERBS} for principal in expected}
    wrong = {f"{p}/{v}": got for p, row in table.items() for v, got in row.items() if got != expected[p]}
    write_summary(f"authz-{platform}", cells=len(outcome), mismatches=wrong, table=table)
    assert wrong == {}, wrong
