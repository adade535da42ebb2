"""/quota subcommands and /usage through the real discord.py: what the adapter passes to the core (moderator
flag from the interaction's own permissions, targets, amounts, idempotency keys) and how answers render."""

from __future__ import annotations

from typing import Any

import pytest

from bots.discord.bot import DiscordBot
from core.events import UserRef
from core.outcomes import Notice
from tests.discord.discord_support import FakeStudio, World, answer
from tests.fakes.fake_discord import FLAG_EPHEMERAL, MANAGE_GUILD, MEMBER_PERMISSIONS, FakeDiscord

VERBS: list[tuple[str, str, dict[str, Any], tuple[Any, ...]]] = [
    # subcommand, core method, options (user = bob), expected extra arguments after (key, actor)
    ("set", "set_daily", {"daily": 5}, ("BOB", 5, "IDEM")),
    ("grant", "grant", {"credits": 3}, ("BOB", 3, "IDEM")),
    ("default", "set_default", {"daily": 7}, (7, "IDEM")),
    ("ban", "ban", {}, ("BOB", "IDEM")),
    ("unban", "unban", {}, ("BOB", "IDEM")),
    ("show", "credits", {}, ("BOB",)),
]


def _expected(args: tuple[Any, ...], bob: UserRef, idem: str) -> tuple[Any, ...]:
    return tuple(bob if a == "BOB" else idem if a == "IDEM" else a for a in args)


@pytest.mark.parametrize(("sub", "method", "options", "extra"), VERBS, ids=[v[0] for v in VERBS])
@pytest.mark.parametrize("moderator", [True, False], ids=["manage-server", "member"])
async def test_quota_verbs(
    fake: FakeDiscord, world: World, bot: DiscordBot, studio: FakeStudio, sub: str, method: str,
    options: dict[str, Any], extra: tuple[Any, ...], moderator: bool,
) -> None:
    studio.notice = Notice("Bob: 5 credits left today.", ephemeral=False)
    actor = world.mod if moderator else world.alice
    if sub != "default":
        options = {"user": world.bob, **options}
    interaction = await fake.slash_command(world.guild.channel, actor, "quota", options, subcommand=sub)
    defer = await fake.wait_for("interaction_callback")
    assert defer.params["type"] == 5  # "thinking", before the core is asked anything
    shown = await answer(fake, interaction)
    name, key, who, *args = studio.verbs[0]
    assert name == method and key.community == str(world.guild.id)
    assert who.user_id == str(actor.id) and who.is_moderator is moderator
    bob = UserRef(user_id=str(world.bob.id), username="bob", display_name="bob")
    assert tuple(args) == _expected(extra, bob, f"dc:i:{interaction.id}")
    if moderator:  # the core's public notice
        assert shown["content"] == "Bob: 5 credits left today." and not fake.is_ephemeral(shown)
    else:  # refused by the core, only to the asker
        assert shown["content"].startswith("Only moderators") and fake.is_ephemeral(shown)
    assert len(fake.replies(interaction)) == 1


async def test_quota_show_on_yourself_is_ephemeral(fake: FakeDiscord, world: World, bot: DiscordBot,
                                                   studio: FakeStudio) -> None:
    interaction = await fake.slash_command(world.guild.channel, world.alice, "quota", {}, subcommand="show")
    shown = await answer(fake, interaction)
    assert shown["content"] == "3 credits left today" and fake.is_ephemeral(shown)
    assert fake.calls_to("interaction_callback")[0].params["data"]["flags"] & FLAG_EPHEMERAL  # deferred so
    assert not fake.calls_to("delete_original")  # one clean edit, no public "thinking" flash
    assert studio.verbs[0][0] == "credits" and studio.verbs[0][3] is None


async def test_moderator_status_is_read_from_each_interaction(
    fake: FakeDiscord, world: World, bot: DiscordBot, studio: FakeStudio
) -> None:
    # Same member, permission removed between two invocations: no cache decides.
    studio.notice = Notice("Everyone now gets 3 credits a day.", ephemeral=False)
    channel = world.guild.channel
    await answer(fake, await fake.slash_command(channel, world.mod, "quota", {"daily": 3}, subcommand="default"))
    await answer(fake, await fake.slash_command(channel, world.mod, "quota", {"daily": 4}, subcommand="default",
                                                permissions=MEMBER_PERMISSIONS))
    await answer(fake, await fake.slash_command(channel, world.alice, "quota", {"daily": 4}, subcommand="default",
                                                permissions=MEMBER_PERMISSIONS | MANAGE_GUILD))
    assert [v[2].is_moderator for v in studio.verbs] == [True, False, True]


async def test_usage_goes_to_the_core(fake: FakeDiscord, world: World, bot: DiscordBot,
                                      studio: FakeStudio) -> None:
    shown = await answer(fake, await fake.slash_command(world.guild.channel, world.mod, "usage"))
    assert studio.verbs[0][0] == "usage" and studio.verbs[0][2].is_moderator
    assert fake.is_ephemeral(shown)


async def test_quota_in_a_dm_targets_a_user(fake: FakeDiscord, world: World, bot: DiscordBot,
                                            studio: FakeStudio) -> None:
    dm = fake.dm_channel(world.alice.user)
    await answer(fake, await fake.slash_command(dm, world.alice, "quota", {"user": world.bob.user},
                                                subcommand="show"))
    _, key, who, target = studio.verbs[0]
    assert key.community == f"dm:{dm.id}" and not who.is_moderator and target.user_id == str(world.bob.id)
