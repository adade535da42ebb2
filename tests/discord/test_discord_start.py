"""Start-up, command registration, fatal errors, resume and stop, through the real discord.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import discord
import pytest
from discord.gateway import DiscordWebSocket

from bots.discord.bot import DiscordBot
from bots.process.config import Settings
from core.errors import FatalPlatformError
from core.events import ChannelKey, Platform
from core.records import PendingNotice
from tests.discord.discord_support import ErrorLog, StartBot, World, discord_settings
from tests.fakes.fake_discord import INTENT_MESSAGE_CONTENT, FakeDiscord
from tests.fakes.fake_services import FakeServices


async def test_start_points_discord_py_at_the_configured_urls_and_registers_commands(
    fake: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    bot = await start_bot()
    assert bot.ready
    assert fake.api_url == discord.http.Route.BASE
    assert str(DiscordWebSocket.DEFAULT_GATEWAY) == fake.gateway_url
    order = [c.method for c in fake.calls if c.method in (
        "get_user", "application_info", "bulk_upsert_global_commands", "GATEWAY IDENTIFY")]
    assert order == ["get_user", "application_info", "bulk_upsert_global_commands", "GATEWAY IDENTIFY"]
    identify = fake.calls_to("GATEWAY IDENTIFY")[0].params
    intents = discord.Intents._from_value(identify["intents"])
    assert intents.message_content and intents.guilds and intents.guild_messages and intents.dm_messages
    assert not intents.members and not intents.presences


async def test_commands_match_the_chat_contract_exactly(fake: FakeDiscord, bot: DiscordBot) -> None:
    commands = {c["name"]: c for c in fake.commands}
    assert sorted(commands) == ["Edit image", "edit", "help", "imagine", "language", "quota", "usage"]
    assert commands["Edit image"]["type"] == 3  # a message context-menu command
    assert all(c["type"] == 1 for name, c in commands.items() if name != "Edit image")

    def options(command: dict[str, Any]) -> dict[str, tuple[int, bool, list[str]]]:
        return {o["name"]: (o["type"], o.get("required", False), [c["value"] for c in o.get("choices", [])])
                for o in command.get("options", [])}

    assert options(commands["imagine"]) == {
        "prompt": (3, True, []),
        "size": (3, False, ["square", "portrait", "landscape", "wide", "tall"]),
        "quality": (3, False, ["low", "medium", "high"]),
        "background": (3, False, ["auto", "opaque", "transparent"]),
        **{f"image{n}": (11, False, []) for n in range(1, 5)},
    }
    assert options(commands["edit"]) == {"instruction": (3, True, []), "image": (11, True, []),
                                         **{f"image{n}": (11, False, []) for n in range(2, 5)}}
    assert options(commands["language"]) == {"language": (3, False, ["auto", "en", "zh"])}
    quota = commands["quota"]
    assert quota.get("default_member_permissions") is None  # registered for everyone
    subs = {o["name"]: options(o) for o in quota["options"]}
    assert all(o["type"] == 1 for o in quota["options"])
    assert subs == {
        "show": {"user": (6, False, [])},
        "set": {"user": (6, True, []), "daily": (4, True, [])},
        "grant": {"user": (6, True, []), "credits": (4, True, [])},
        "default": {"daily": (4, True, [])},
        "ban": {"user": (6, True, [])},
        "unban": {"user": (6, True, [])},
    }
    assert options(commands["usage"]) == {} and options(commands["help"]) == {}


async def test_bad_token_is_fatal_without_retries(fake: FakeDiscord, world: World, start_bot: StartBot,
                                                  services: FakeServices) -> None:
    fake.token = "another-token"  # the fake now rejects the configured one: 401 on /users/@me
    with pytest.raises(FatalPlatformError, match="DISCORD_TOKEN") as raised:
        await start_bot()
    assert "fake-discord-token" not in str(raised.value)
    assert len(fake.calls_to("401 get_user")) == 1
    assert not fake.calls_to("GATEWAY IDENTIFY")


async def test_gateway_4004_is_fatal(fake: FakeDiscord, world: World, start_bot: StartBot) -> None:
    fake.gateway_token = "another-token"
    with pytest.raises(FatalPlatformError, match="DISCORD_TOKEN"):
        await start_bot()
    assert len(fake.calls_to("GATEWAY IDENTIFY")) == 1


async def test_missing_message_content_intent_tells_the_operator(
    fake: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    fake.privileged_intents = 0  # not enabled in the developer portal
    with pytest.raises(FatalPlatformError, match="Message Content") as raised:
        await start_bot()
    assert "Developer Portal" in str(raised.value)
    assert len(fake.calls_to("GATEWAY IDENTIFY")) == 1


async def test_fatal_close_after_start_reaches_on_fatal_once(
    fake: FakeDiscord, world: World, start_bot: StartBot, error_log: ErrorLog
) -> None:
    fatal: list[str] = []
    called = asyncio.Event()

    def on_fatal(message: str) -> None:
        fatal.append(message)
        called.set()

    bot = await start_bot(on_fatal=on_fatal)
    fake.privileged_intents &= ~INTENT_MESSAGE_CONTENT
    await fake.close_gateway(4014)
    await asyncio.wait_for(called.wait(), 5)
    assert "Message Content" in fatal[0] and len(fatal) == 1
    assert any("Message Content" in line for line in error_log.take())  # logged for the operator too
    assert len(fake.calls_to("GATEWAY IDENTIFY")) == 1  # no restart loop
    await bot.stop()
    assert not bot.ready


async def test_reconnect_resumes_and_replays_missed_events(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    await fake.request_reconnect()
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await fake.wait_for("GATEWAY RESUME")
    await services.wait_finished(1)
    assert services.requests[0].idempotency_key == f"dc:i:{interaction.id}"
    assert len(fake.calls_to("GATEWAY IDENTIFY")) == 1
    assert bot.ready


async def test_pending_notices_are_sent_after_ready(
    fake: FakeDiscord, world: World, start_bot: StartBot, services: FakeServices
) -> None:
    channel = world.guild.channel
    asked = await fake.user_message(channel, world.alice, "hello")  # before the bot is up: not handled
    key = ChannelKey(Platform.DISCORD, str(world.guild.id), str(channel.id))
    services.notices = [
        PendingNotice(7, key, asked["id"], "Your round was interrupted by a restart and not charged."),
        PendingNotice(8, key, "123", "Another notice, its message is gone."),
    ]
    await start_bot()
    second = await fake.wait_for("send_message", count=2)
    first = fake.calls_to("send_message")[0]
    assert first.params["content"].startswith("Your round was interrupted")
    assert str(first.params["message_reference"]["message_id"]) == asked["id"]
    assert first.params["allowed_mentions"]["parse"] == []
    assert second.params["message_reference"]["fail_if_not_exists"] is False
    await fake.wait_until(lambda: services.sent_notices == [7, 8], what="notice_sent")


async def test_stop_is_idempotent_and_closes_the_gateway(fake: FakeDiscord, bot: DiscordBot) -> None:
    await bot.stop()
    await bot.stop()
    assert not bot.ready
    await fake.wait_until(lambda: not fake.connected, what="gateway closed")


async def test_missing_token_is_fatal(fake: FakeDiscord, services: FakeServices, tmp_path: Path) -> None:
    settings = discord_settings(fake, tmp_path, DISCORD_TOKEN="")
    with pytest.raises(FatalPlatformError, match="DISCORD_TOKEN"):
        await DiscordBot(settings, services.services).start()


async def test_unreachable_rest_api_is_fatal(fake: FakeDiscord, services: FakeServices, tmp_path: Path) -> None:
    settings = discord_settings(fake, tmp_path, EASEL_DISCORD_API_URL="http://127.0.0.1:9/api/v10")
    with pytest.raises(FatalPlatformError, match="EASEL_DISCORD_API_URL"):
        await DiscordBot(settings, services.services).start()


async def test_a_gateway_that_never_gets_ready_is_fatal(fake: FakeDiscord, world: World, settings: Settings,
                                                        services: FakeServices) -> None:
    fake.identify_hangs = True
    bot = DiscordBot(settings, services.services, guild_ready_timeout=0.01)
    bot.connect_timeout = 0.2
    with pytest.raises(FatalPlatformError, match="EASEL_DISCORD_GATEWAY_URL"):
        await bot.start()
    assert not bot.ready


async def test_every_description_is_localised_for_chinese_and_names_stay_english(
    fake: FakeDiscord, bot: DiscordBot
) -> None:
    registered = fake.calls_to("bulk_upsert_global_commands")[0].params["_list"]
    described: list[dict[str, Any]] = []

    def walk(item: dict[str, Any]) -> None:
        described.append(item)
        for option in item.get("options") or []:
            walk(option)

    for command in registered:
        if command.get("type", 1) == 1:
            walk(command)
        else:  # a context-menu command has no description; its name is the contract's
            assert command["name"] == "Edit image" and not command.get("name_localizations")
    assert len(described) > 30
    for item in described:
        localized = item.get("description_localizations") or {}
        assert set(localized) == {"zh-CN", "zh-TW"}, item["name"]
        assert all(text and text != item["description"] and len(text) <= 100 for text in localized.values())
        assert not item.get("name_localizations"), item["name"]
        for choice in item.get("choices") or []:
            assert not choice.get("name_localizations") and choice["name"] == choice["value"]
    imagine = next(c for c in registered if c["name"] == "imagine")
    assert imagine["description"] == "Create an image from a prompt"
    assert imagine["description_localizations"]["zh-CN"] == "根据提示词生成图片"
    menu = fake.command("Edit image")
    assert menu["description"] == ""  # as Discord answers for context-menu commands


async def test_a_second_start_registers_nothing_when_the_commands_are_unchanged(
    fake: FakeDiscord, world: World, start_bot: StartBot
) -> None:
    first = await start_bot()
    assert len(fake.calls_to("bulk_upsert_global_commands")) == 1
    await first.stop()
    await start_bot()
    assert len(fake.calls_to("get_global_commands")) == 2
    assert fake.calls_to("get_global_commands")[1].params["_query"] == {"with_localizations": "true"}
    assert len(fake.calls_to("bulk_upsert_global_commands")) == 1  # no PUT the second time


async def test_changed_commands_are_registered_again(fake: FakeDiscord, world: World, start_bot: StartBot) -> None:
    first = await start_bot()
    await first.stop()
    imagine = fake.command("imagine")
    imagine["description_localizations"] = {"zh-CN": "旧的说明"}  # an older version is registered
    await start_bot()
    assert len(fake.calls_to("bulk_upsert_global_commands")) == 2
    assert fake.command("imagine")["description_localizations"]["zh-TW"]


async def _guild_on_shard(fake: FakeDiscord, shard: int, count: int, name: str) -> Any:
    """A guild whose id routes to `shard` of `count` (Discord: (id >> 22) % count)."""
    while True:
        guild = await fake.guild(name)
        if fake.shard_for(guild.id, count) == shard:
            return guild
        del fake.guilds[guild.id]


@pytest.mark.parametrize(("shards", "pairs"), [("0,1/4", [[0, 4], [1, 4]]), ("2/4", [[2, 4]])])
async def test_discord_shards_identify_exactly_the_listed_shards(
    fake: FakeDiscord, services: FakeServices, start_bot: StartBot, tmp_path: Path, shards: str,
    pairs: list[list[int]],
) -> None:
    mine = await _guild_on_shard(fake, pairs[-1][0], 4, "mine")
    other = await _guild_on_shard(fake, 3, 4, "not mine")
    settings = discord_settings(fake, tmp_path, EASEL_DISCORD_SHARDS=shards)
    bot = await start_bot(settings_=settings, identify_interval=0.0)
    assert sorted(c.params["shard"] for c in fake.calls_to("GATEWAY IDENTIFY")) == pairs
    assert fake.shards_connected() == [tuple(p) for p in pairs]
    assert not fake.calls_to("get_bot_gateway")  # the count is ours: no recommended-shards lookup
    assert bot.client.get_guild(mine.id) is not None and bot.client.get_guild(other.id) is None
    # Only the worker that runs shard 0 registers the commands.
    registered = fake.calls_to("get_global_commands") + fake.calls_to("bulk_upsert_global_commands")
    assert bool(registered) == (pairs[0][0] == 0)
    # A message in a guild of one of this worker's shards reaches it (through that shard's connection).
    member = fake.member(mine, "ann")
    await fake.user_message(mine.channel, member, "a fox", mention_bot=True)
    await services.wait_finished()
    assert [r.key.community for r in services.requests] == [str(mine.id)]


async def test_without_shards_setting_one_connection_runs_everything(fake: FakeDiscord, world: World,
                                                                   bot: DiscordBot) -> None:
    assert [c.params.get("shard") for c in fake.calls_to("GATEWAY IDENTIFY")] in ([None], [[0, 1]])
    assert bot.client.get_guild(world.guild.id) is not None
