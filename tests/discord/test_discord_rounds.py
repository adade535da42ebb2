"""Slash commands and buttons through the real discord.py, against a FakeServices that records what the adapter
built and plays the round through the adapter's view."""

from __future__ import annotations

import asyncio
import io
import os

from PIL import Image

from bots.discord.bot import DiscordBot
from core.errors import APOLOGY_ID
from core.events import ChannelKey, Platform, Quality, Shape, SpecOptions
from core.outcomes import Refusal
from core.texts import say
from tests.discord.discord_support import (
    ErrorLog,
    StartBot,
    World,
    assert_no_mass_mentions,
    buttons,
    payload_of,
)
from tests.fakes.fake_discord import CB_DEFER, FLAG_EPHEMERAL, FakeDiscord
from tests.fakes.fake_provider import png as provider_png
from tests.fakes.fake_services import FakeServices


async def test_imagine_defers_first_then_edits_in_the_image_with_caption_and_reroll(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    channel = world.guild.channel
    before = len(fake.calls)
    interaction = await fake.slash_command(
        channel, world.alice, "imagine", {"prompt": "a red fox", "size": "landscape", "quality": "high"}
    )
    await services.wait_finished(1)
    final = fake.calls_to("edit_original")[-1]  # the progress message became the result
    first = fake.calls[before]  # the very first thing the adapter does is acknowledging
    assert first.method == "interaction_callback" and first.params["type"] == CB_DEFER
    request = services.requests[0]
    assert request.key == ChannelKey(Platform.DISCORD, str(world.guild.id), str(channel.id))
    assert request.actor.user_id == str(world.alice.id) and request.actor.username == "alice"
    assert not request.actor.is_moderator
    assert (request.prompt, request.options.shape, request.options.quality) == (
        "a red fox",
        Shape.LANDSCAPE,
        Quality.HIGH,
    )
    assert request.idempotency_key == f"dc:i:{interaction.id}"
    assert request.reply_to is None and request.input_image is None
    assert final.params["content"] == "#1 · 9 credits left today"
    assert final.files["files[0]"] == services.result_image
    message = fake.original(interaction)
    assert message is not None and message["attachments"][0]["filename"] == "easel-1.png"
    assert buttons(message) == [("Reroll", "easel:reroll:1")]
    assert services.delivered == [[message["id"]]]
    assert (services.seen_calls[0][0].user_id, services.seen_calls[0][1]) == (str(world.alice.id), str(world.guild.id))
    assert_no_mass_mentions(fake)


async def test_no_options_leave_the_choice_to_the_core(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished(1)
    # None keeps an edit's parent's options, or the default (square, medium): the core decides.
    assert services.requests[0].options == SpecOptions()


async def test_partial_previews_edit_the_response_throttled(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.previews = 3
    services.positions = [2]
    await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished(1)
    edits = fake.calls_to("edit_original")
    # queued (a slot within the grace: no edit of its own), started (stage, elapsed time, Cancel), the first
    # preview (the next two within 2.5 s are dropped), then the result
    contents = [e.params.get("content") or "" for e in edits]
    assert contents[0].startswith("Thinking… <t:")
    assert contents[1:] == ["Drawing… (preview)", "#1 · 9 credits left today"]
    assert edits[1].files["files[0]"] == provider_png(16, 16, (0, 0, 0))  # the first preview, as sent


async def test_button_press_after_a_restart_rerolls_for_the_presser(
    fake: FakeDiscord, world: World, start_bot: StartBot, services: FakeServices
) -> None:
    first = await start_bot()
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished(1)
    result = fake.original(interaction)
    assert result is not None
    await first.stop()
    await start_bot()  # a new process: no view in memory, only the custom id on the message
    press = await fake.click_button(result, world.bob, "easel:reroll:1")
    await services.wait_finished(2)
    pressed = services.presses[0]
    action, key, actor, idem = pressed.action, pressed.key, pressed.actor, pressed.idempotency_key
    assert action == "reroll:1" and actor.user_id == str(world.bob.id)
    assert key.community == str(world.guild.id) and idem == f"dc:i:{press.id}"
    callback = [
        c for c in fake.calls_to("interaction_callback") if c.params["_path"]["interaction_id"] == str(press.id)
    ]
    assert callback[0].params["type"] == CB_DEFER
    rerolled = fake.original(press)
    assert rerolled is not None and rerolled["id"] != result["id"]  # a new message; the old image stays
    assert buttons(rerolled) == [("Reroll", "easel:reroll:2")]
    assert fake.message(result["id"])["attachments"]


async def test_ephemeral_refusal_replaces_the_public_thinking_message(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.refusal = Refusal("You have 0 credits left today. They reset at 00:00 UTC.", "over_quota")
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    followup = await fake.wait_for("followup")
    assert fake.calls_to("delete_original"), "the public thinking message must go first"
    assert fake.calls.index(fake.calls_to("delete_original")[0]) < fake.calls.index(followup)
    assert followup.params["flags"] & FLAG_EPHEMERAL
    assert followup.params["content"].startswith("You have 0 credits left today")
    assert fake.original(interaction) is None
    shown = [m for m in fake.messages_in(world.guild.channel) if "credits left" in m["content"]]
    assert len(shown) == 1 and shown[0]["flags"] & FLAG_EPHEMERAL
    assert_no_mass_mentions(fake)


async def test_public_refusal_edits_the_response(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.refusal = Refusal("The image provider's safety system declined that prompt.", "safety", ephemeral=False)
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished(1)
    edit = fake.calls_to("edit_original")[-1]
    assert edit.params["content"].startswith("The image provider's safety system") and not edit.params["components"]
    message = fake.original(interaction)
    assert message is not None and not message["flags"] & FLAG_EPHEMERAL and not message["attachments"]
    assert not fake.calls_to("followup")


async def test_unexpected_error_answers_the_generic_apology_only(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices, error_log: ErrorLog
) -> None:
    services.error = RuntimeError("secret internals: /var/lib/easel token=abc")
    await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    followup = await fake.wait_for("followup")
    assert followup.params["content"] == say("en", APOLOGY_ID)
    assert all("secret internals" not in str(payload_of(c)) for c in fake.sends())
    assert any("failed" in line for line in error_log.take())


async def test_redelivered_interaction_is_handled_once(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished(1)
    await fake.slash_command(world.guild.channel, world.alice, "imagine", redeliver=interaction)
    await fake.wait_for("400 interaction_callback")  # 40060: already acknowledged -> the adapter stops there
    await fake.slash_command(world.guild.channel, world.bob, "imagine", {"prompt": "sentinel"})
    await services.wait_finished(2)
    assert [r.prompt for r in services.requests] == ["a fox", "sentinel"]
    assert len(fake.calls_to("edit_original")) == 4  # progress and result, for each round once


async def test_duplicate_the_core_ignores_leaves_no_thinking_message(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    first = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished(1)
    services._keys.add("dc:i:42")  # the core has seen this key (e.g. handled before a crash)
    second = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    services._keys.add(f"dc:i:{second.id}")
    await fake.wait_for("delete_original")
    assert fake.original(second) is None and fake.original(first) is not None
    assert services.duplicates == 1


async def test_too_late_interaction_is_skipped_without_calling_the_core(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    fake.ack_deadline = 0.0  # every callback arrives after Discord's window: 10062
    await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await fake.wait_for("404 interaction_callback")
    fake.ack_deadline = None
    await fake.slash_command(world.guild.channel, world.bob, "imagine", {"prompt": "sentinel"})
    await services.wait_finished(1)
    assert [r.prompt for r in services.requests] == ["sentinel"]


async def test_round_outliving_the_token_is_delivered_to_the_channel(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    # The interaction was created 14.5 minutes ago (discord.py dates it from its snowflake): by delivery the
    # token is about to expire, so the result goes out as a channel message.
    interaction = await fake.slash_command(
        world.guild.channel, world.alice, "imagine", {"prompt": "a fox"}, created_ago=14.5 * 60
    )
    sent = await fake.wait_for("send_message")
    assert sent.params["content"] == "#1 · 9 credits left today"
    assert sent.files["files[0]"] == services.result_image
    assert sent.params["components"][0]["components"][0]["custom_id"] == "easel:reroll:1"
    await services.wait_finished(1)
    assert not fake.calls_to("edit_original")
    assert services.delivered == [[fake.messages_in(world.guild.channel)[-1]["id"]]]
    assert fake.calls_to("delete_original")  # the stale "thinking" message is removed while still possible
    assert fake.original(interaction) is None
    assert_no_mass_mentions(fake)


async def test_expired_token_refusal_goes_to_the_channel_without_a_ping(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.refusal = Refusal("Out of credits.", "over_quota")
    await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"}, created_ago=16 * 60)
    sent = await fake.wait_for("send_message")
    assert sent.params["content"] == f"<@{world.alice.id}> Out of credits."
    assert sent.params["allowed_mentions"] == {"parse": []}  # not even the user named in the text is pinged
    assert not fake.calls_to("delete_original")  # the token is dead: no call that would fail


async def test_rate_limited_edit_is_waited_out(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    fake.rate_limit_next("edit_original", retry_after=0.01)
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished(1)
    assert fake.calls_to("429 edit_original") and len(fake.calls_to("edit_original")) == 2
    assert fake.original(interaction) is not None and services.delivered


async def test_oversized_result_is_reencoded_to_the_interaction_limit(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3)).save(buffer, format="PNG")
    services.result_image = buffer.getvalue()  # ~197 KB of noise
    limit = 60_000
    assert len(services.result_image) > limit
    interaction = await fake.slash_command(
        world.guild.channel, world.alice, "imagine", {"prompt": "a fox"}, attachment_size_limit=limit
    )
    await services.wait_finished(1)
    edit = fake.calls_to("edit_original")[-1]
    assert len(edit.files["files[0]"]) <= limit
    message = fake.original(interaction)
    assert message is not None and message["attachments"][0]["filename"] == "easel-1.jpg"
    assert message["attachments"][0]["content_type"] == "image/jpeg"


async def test_help_is_answered_at_once_and_only_to_the_asker(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.help = "Easel makes images: /imagine prompt:<text>. Reply to an image to edit it."
    await fake.slash_command(world.guild.channel, world.alice, "help")
    callback = await fake.wait_for("interaction_callback")
    assert callback.params["type"] == 4
    assert callback.params["data"]["flags"] & FLAG_EPHEMERAL
    assert "/imagine" in callback.params["data"]["content"]
    assert_no_mass_mentions(fake)


async def test_dm_is_its_own_community_and_never_moderator(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    dm = fake.dm_channel(world.alice.user)
    await fake.slash_command(dm, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished(1)
    request = services.requests[0]
    assert request.key == ChannelKey(Platform.DISCORD, f"dm:{dm.id}", str(dm.id))
    assert not request.actor.is_moderator


async def test_handlers_run_concurrently(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.gate = asyncio.Event()
    await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "slow"})
    await fake.slash_command(world.guild.channel, world.bob, "imagine", {"prompt": "also slow"})
    await fake.wait_for("interaction_callback", count=2)  # both acknowledged while the first still runs
    services.gate.set()
    await services.wait_finished(2)


async def test_result_goes_to_the_channel_when_the_thinking_message_was_deleted(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.gate = asyncio.Event()
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await fake.wait_for("interaction_callback")
    thinking = fake.original(interaction)
    assert thinking is not None
    await fake.delete_message(thinking)  # a moderator cleans up the channel meanwhile
    services.gate.set()
    sent = await fake.wait_for("send_message")
    await services.wait_finished(1)
    assert fake.calls_to("404 edit_original")
    assert sent.params["content"] == "#1 · 9 credits left today" and sent.files["files[0]"] == services.result_image
    assert services.delivered == [[fake.messages_in(world.guild.channel)[-1]["id"]]]
