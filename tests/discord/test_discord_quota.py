"""/quota subcommands and /usage through the real discord.py: what the adapter passes to the core (moderator
flag from the interaction's own permissions, targets, amounts, idempotency keys) and how answers render."""

from __future__ import annotations

from typing import Any

import pytest

from bots.discord.bot import DiscordBot
from core.events import UserRef, Verb
from core.outcomes import Notice
from tests.discord.discord_support import World, answer
from tests.fakes.fake_discord import FLAG_EPHEMERAL, MANAGE_GUILD, MEMBER_PERMISSIONS, FakeDiscord
from tests.fakes.fake_services import FakeServices

VERBS: list[tuple[str, Verb, dict[str, Any], bool, int | None]] = [
    # subcommand, the desk's verb, options (user = bob), whether bob is the target, the amount
    ("set", Verb.SET, {"daily": 5}, True, 5),
    ("grant", Verb.GRANT, {"credits": 3}, True, 3),
    ("default", Verb.DEFAULT, {"daily": 7}, False, 7),
    ("ban", Verb.BAN, {}, True, None),
    ("unban", Verb.UNBAN, {}, True, None),
    ("show", Verb.SHOW, {}, True, None),
]


@pytest.mark.parametrize(("sub", "verb", "options", "targeted", "amount"), VERBS, ids=[v[0] for v in VERBS])
@pytest.mark.parametrize("moderator", [True, False], ids=["manage-server", "member"])
async def test_quota_verbs(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices, sub: str, verb: Verb,
    options: dict[str, Any], targeted: bool, amount: int | None, moderator: bool,
) -> None:
    services.desk_notice = lambda _: Notice("Bob: 5 credits left today.", ephemeral=False)
    actor = world.mod if moderator else world.alice
    if sub != "default":
        options = {"user": world.bob, **options}
    interaction = await fake.slash_command(world.guild.channel, actor, "quota", options, subcommand=sub)
    defer = await fake.wait_for("interaction_callback")
    assert defer.params["type"] == 5  # "thinking", before the core is asked anything
    shown = await answer(fake, interaction)
    command = services.desk_commands[0]
    assert command.verb is verb and command.key.community == str(world.guild.id)
    assert command.actor.user_id == str(actor.id) and command.actor.is_moderator is moderator
    bob = UserRef(user_id=str(world.bob.id), username="bob", display_name="bob")
    assert command.target == (bob if targeted else None)
    assert (command.amount, command.idempotency_key) == (amount, f"dc:i:{interaction.id}")
    if moderator:  # the core's public notice
        assert shown["content"] == "Bob: 5 credits left today." and not fake.is_ephemeral(shown)
    else:  # refused by the core, only to the asker
        assert shown["content"].startswith("Only moderators") and fake.is_ephemeral(shown)
    assert len(fake.replies(interaction)) == 1


async def test_quota_show_on_yourself_is_ephemeral(fake: FakeDiscord, world: World, bot: DiscordBot,
                                                   services: FakeServices) -> None:
    interaction = await fake.slash_command(world.guild.channel, world.alice, "quota", {}, subcommand="show")
    shown = await answer(fake, interaction)
    assert shown["content"] == "3 credits left today" and fake.is_ephemeral(shown)
    assert fake.calls_to("interaction_callback")[0].params["data"]["flags"] & FLAG_EPHEMERAL  # deferred so
    assert not fake.calls_to("delete_original")  # one clean edit, no public "thinking" flash
    assert services.desk_commands[0].verb is Verb.SHOW and services.desk_commands[0].target is None


async def test_moderator_status_is_read_from_each_interaction(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    # Same member, permission removed between two invocations: no cache decides.
    services.desk_notice = lambda _: Notice("Everyone now gets 3 credits a day.", ephemeral=False)
    channel = world.guild.channel
    await answer(fake, await fake.slash_command(channel, world.mod, "quota", {"daily": 3}, subcommand="default"))
    await answer(fake, await fake.slash_command(channel, world.mod, "quota", {"daily": 4}, subcommand="default",
                                                permissions=MEMBER_PERMISSIONS))
    await answer(fake, await fake.slash_command(channel, world.alice, "quota", {"daily": 4}, subcommand="default",
                                                permissions=MEMBER_PERMISSIONS | MANAGE_GUILD))
    assert [c.actor.is_moderator for c in services.desk_commands] == [True, False, True]


async def test_usage_goes_to_the_core(fake: FakeDiscord, world: World, bot: DiscordBot,
                                      services: FakeServices) -> None:
    services.desk_notice = lambda _: Notice("community usage", ephemeral=True)
    shown = await answer(fake, await fake.slash_command(world.guild.channel, world.mod, "usage"))
    assert services.desk_commands[0].verb is Verb.USAGE and services.desk_commands[0].actor.is_moderator
    assert not fake.is_ephemeral(shown)  # a moderator's community totals are public in the server


async def test_quota_in_a_dm_targets_a_user(fake: FakeDiscord, world: World, bot: DiscordBot,
                                            services: FakeServices) -> None:
    dm = fake.dm_channel(world.alice.user)
    await answer(fake, await fake.slash_command(dm, world.alice, "quota", {"user": world.bob.user},
                                                subcommand="show"))
    command = services.desk_commands[0]
    assert command.key.community == f"dm:{dm.id}" and not command.actor.is_moderator
    assert command.target is not None and command.target.user_id == str(world.bob.id)


async def test_usage_totals_are_public_and_per_user_figures_go_to_the_moderator_only(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.desk_notice = lambda _: Notice("12 images today", ephemeral=True, detail="alice 7, bob 5")
    interaction = await fake.slash_command(world.guild.channel, world.mod, "usage")
    await fake.wait_until(lambda: len(fake.replies(interaction)) == 2, what="totals and detail")
    totals, detail = fake.replies(interaction)
    assert totals["content"] == "12 images today" and not fake.is_ephemeral(totals)
    assert detail["content"] == "alice 7, bob 5" and fake.is_ephemeral(detail)
    assert all("alice" not in m["content"] for m in fake.messages_in(world.guild.channel)
               if not fake.is_ephemeral(m))


async def test_a_members_own_usage_is_private_from_the_start(fake: FakeDiscord, world: World, bot: DiscordBot,
                                                            services: FakeServices) -> None:
    services.desk_notice = lambda _: Notice("you made 2 images today", ephemeral=True)
    interaction = await fake.slash_command(world.guild.channel, world.alice, "usage")
    shown = await answer(fake, interaction)
    assert fake.is_ephemeral(shown) and shown["content"] == "you made 2 images today"
    assert fake.calls_to("interaction_callback")[0].params["data"]["flags"] & 64  # deferred ephemeral
    assert not fake.calls_to("delete_original")
