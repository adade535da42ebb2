"""EASEL_COMMUNITIES on Discord, through the real discord.py: outside the listed servers Easel answers once that
it is private and leaves; a server that adds it is left at once; DMs go to the core, which decides."""

from __future__ import annotations

from pathlib import Path

from bots.discord.bot import DiscordBot
from tests.discord.discord_support import StartBot, World, discord_settings
from tests.fakes.fake_discord import FakeDiscord, FakeGuild
from tests.fakes.fake_services import FakeServices

PRIVATE = "This bot is private and doesn't work here."


async def _start_listed(fake: FakeDiscord, world: World, start_bot: StartBot, tmp_path: Path) -> DiscordBot:
    return await start_bot(settings_=discord_settings(fake, tmp_path, EASEL_COMMUNITIES=f"discord:{world.guild.id}"))


async def test_a_command_in_an_unlisted_server_is_answered_privately_and_the_server_left(
    fake: FakeDiscord, world: World, start_bot: StartBot, services: FakeServices, tmp_path: Path
) -> None:
    outside: FakeGuild = await fake.guild("Elsewhere")
    stranger = fake.member(outside, "stranger")
    await _start_listed(fake, world, start_bot, tmp_path)
    interaction = await fake.slash_command(outside.channel, stranger, "imagine", {"prompt": "a fox"})
    await fake.wait_for("leave_guild")
    answer = fake.original(interaction)
    assert answer is not None and answer["content"].startswith(PRIVATE) and fake.is_ephemeral(answer)
    assert fake.left_guilds == [outside.id] and not services.requests and not services.seen_calls
    # The listed server is served as before.
    await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished()
    assert [r.key.community for r in services.requests] == [str(world.guild.id)]


async def test_a_mention_in_an_unlisted_server_is_answered_once_and_the_server_left(
    fake: FakeDiscord, world: World, start_bot: StartBot, services: FakeServices, tmp_path: Path
) -> None:
    outside = await fake.guild("Elsewhere")
    stranger = fake.member(outside, "stranger")
    await _start_listed(fake, world, start_bot, tmp_path)
    mention = await fake.user_message(outside.channel, stranger, "a fox", mention_bot=True)
    await fake.wait_for("leave_guild")
    replies = [m for m in fake.messages_in(outside.channel) if m.get("message_reference")]
    assert len(replies) == 1 and replies[0]["content"].startswith(PRIVATE)
    assert replies[0]["message_reference"]["message_id"] == mention["id"]
    assert not services.requests


async def test_a_server_that_adds_easel_is_left_at_once_unless_listed(
    fake: FakeDiscord, world: World, start_bot: StartBot, tmp_path: Path
) -> None:
    bot = await _start_listed(fake, world, start_bot, tmp_path)
    joined = await fake.guild("Just added me")
    await fake.wait_for("leave_guild")
    assert fake.left_guilds == [joined.id]
    await fake.wait_until(lambda: bot.client.get_guild(joined.id) is None, what="GUILD_DELETE handled")
    assert bot.client.get_guild(world.guild.id) is not None


async def test_without_the_setting_every_server_is_served(fake: FakeDiscord, world: World, bot: DiscordBot,
                                                          services: FakeServices) -> None:
    joined = await fake.guild("Anywhere")
    member = fake.member(joined, "ann")
    await fake.slash_command(joined.channel, member, "imagine", {"prompt": "a fox"})
    await services.wait_finished()
    assert not fake.calls_to("leave_guild")


async def test_a_dm_goes_to_the_core_which_decides(
    fake: FakeDiscord, world: World, start_bot: StartBot, services: FakeServices, tmp_path: Path
) -> None:
    await _start_listed(fake, world, start_bot, tmp_path)
    dm = fake.dm_channel(world.alice.user)
    await fake.user_message(dm, world.alice, "a fox")
    await services.wait_finished()
    assert services.requests[0].key.community == f"dm:{dm.id}"
    assert not fake.calls_to("leave_guild")
