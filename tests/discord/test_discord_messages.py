"""Chat messages through the real discord.py: replies to Easel's images, mentions with images, /edit uploads."""

from __future__ import annotations

import asyncio
from typing import Any

from bots.discord.bot import DiscordBot
from core.errors import BadInputImage
from core.events import ChannelKey, Platform
from core.outcomes import Refusal
from tests.discord.discord_support import World, assert_no_mass_mentions, buttons, png
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_services import FakeServices


async def _first_round(
    fake: FakeDiscord, world: World, services: FakeServices, prompt: str = "a fox"
) -> dict[str, Any]:
    done = services.finished
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": prompt})
    await services.wait_finished(done + 1)
    message = fake.original(interaction)
    assert message is not None
    return message


async def test_reply_to_an_image_is_an_edit_round_answered_as_a_reply(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    image = await _first_round(fake, world, services)
    asked = await fake.user_message(world.guild.channel, world.bob, "make it blue", reply_to=image)
    await services.wait_finished(2)
    status = fake.calls_to("send_message")[0]  # the progress reply, then edited into the result
    sent = fake.calls_to("edit_message")[-1]
    request = services.requests[1]
    assert request.reply_to == image["id"]
    assert request.prompt == "make it blue" and request.input_image is None
    assert request.idempotency_key == f"dc:m:{asked['id']}"
    assert request.actor.user_id == str(world.bob.id)
    assert request.key == ChannelKey(Platform.DISCORD, str(world.guild.id), str(world.guild.channel.id))
    assert fake.calls_to("send_typing")
    assert str(status.params["message_reference"]["message_id"]) == asked["id"]
    assert status.params["allowed_mentions"] == {"parse": []}  # replied_user is off: no ping
    assert sent.files["files[0]"] == services.result_image
    reply = fake.messages_in(world.guild.channel)[-1]
    assert reply["type"] == 19 and buttons(reply) == [("Reroll", "easel:reroll:2")]
    await services.wait_finished(2)
    assert services.delivered[1] == [reply["id"]]


async def test_replying_to_an_older_image_branches_from_it(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    first = await _first_round(fake, world, services)
    await fake.user_message(world.guild.channel, world.alice, "darker", reply_to=first)
    await services.wait_finished(2)
    await fake.user_message(world.guild.channel, world.alice, "lighter instead", reply_to=first)
    await services.wait_finished(3)
    assert [r.reply_to for r in services.requests[1:]] == [first["id"], first["id"]]


async def test_reply_without_the_referenced_message_fetches_it(
    fake: FakeDiscord, world: World, start_bot: object, services: FakeServices
) -> None:
    # The round message was made before this bot process started, so it is in no cache.
    first_bot = await start_bot()  # type: ignore[operator]
    image = await _first_round(fake, world, services)
    await first_bot.stop()
    await start_bot()  # type: ignore[operator]
    await fake.user_message(world.guild.channel, world.bob, "add a hat", reply_to=image,
                            include_referenced=False)
    fetched = await fake.wait_for("get_message")
    assert fetched.params["_path"]["message_id"] == image["id"]
    await services.wait_finished(2)
    assert services.requests[1].reply_to == image["id"]


async def test_messages_that_are_not_for_easel_are_ignored(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    channel = world.guild.channel
    image = await _first_round(fake, world, services)
    chat = await fake.user_message(channel, world.alice, "hello all")
    await fake.user_message(channel, world.bob, "hi alice", reply_to=chat)  # a reply to a person
    services.round_messages.clear()  # the core says: not (or no longer) a round message,
    image["components"] = []  # and it carries no result button either
    await fake.user_message(channel, world.bob, "thanks", reply_to=image)
    await fake.user_message(channel, world.bob, "@everyone look")
    bot_friend = fake.user("otherbot")
    bot_friend.bot = True
    fake.member(world.guild, "otherbot", user=bot_friend)
    await fake.user_message(channel, bot_friend, "draw a fox", mention_bot=True)
    await fake.user_message(channel, world.bob, "a sentinel fox", mention_bot=True)
    await services.wait_finished(2)
    assert [r.prompt for r in services.requests] == ["a fox", "a sentinel fox"]


async def test_mention_with_an_image_edits_that_image(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    photo = png(40, 30, (1, 2, 3))
    asked = await fake.user_message(world.guild.channel, world.alice, "make it a painting", mention_bot=True,
                                    attachments=[("cat.png", photo, "image/png")])
    await services.wait_finished(1)
    request = services.requests[0]
    assert request.prompt == "make it a painting" and request.reply_to is None
    assert request.input_image is not None
    assert request.input_image.declared_bytes == len(photo) and request.input_image.filename == "cat.png"
    assert services.fetched == [photo]
    assert fake.calls_to("cdn")[0].params["path"].endswith("/cat.png")
    sent = fake.calls_to("send_message")[-1]
    assert str(sent.params["message_reference"]["message_id"]) == asked["id"]


async def test_mention_with_several_images_uses_them_all(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    photos = [png(20 + n, 20, (n, 2, 3)) for n in range(3)]
    await fake.user_message(world.guild.channel, world.alice, "put the hat and the scarf on the cat",
                            mention_bot=True,
                            attachments=[(f"p{n}.png", photo, "image/png") for n, photo in enumerate(photos)])
    await services.wait_finished(1)
    request = services.requests[0]
    assert request.input_image is not None and request.input_image.filename == "p0.png"
    assert [image.filename for image in request.references] == ["p1.png", "p2.png"]


async def test_mention_replying_to_a_members_photo_edits_that_photo(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    photo = png(20, 20, (9, 9, 9))
    shared = await fake.user_message(world.guild.channel, world.bob, "my cat",
                                     attachments=[("mine.png", photo, "image/png")])
    await fake.user_message(world.guild.channel, world.alice, "give it a crown", mention_bot=True,
                            reply_to=shared)
    await services.wait_finished(1)
    assert services.fetched == [photo]
    assert services.requests[0].reply_to is None


async def test_mention_with_text_only_generates(fake: FakeDiscord, world: World, bot: DiscordBot,
                                                services: FakeServices) -> None:
    await fake.user_message(world.guild.channel, world.alice, "a lighthouse at dusk", mention_bot=True)
    await services.wait_finished(1)
    assert services.requests[0].prompt == "a lighthouse at dusk" and services.requests[0].input_image is None


async def test_dm_text_is_a_prompt(fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices) -> None:
    dm = fake.dm_channel(world.alice.user)
    await fake.user_message(dm, world.alice, "a tiny robot")
    await services.wait_finished(1)
    assert services.requests[0].key == ChannelKey(Platform.DISCORD, f"dm:{dm.id}", str(dm.id))
    sent = await fake.wait_for("send_message")
    assert sent.params["_path"]["channel_id"] == str(dm.id)


async def test_redelivered_message_carries_the_same_key(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    image = await _first_round(fake, world, services)
    asked = await fake.user_message(world.guild.channel, world.bob, "more snow", reply_to=image)
    await services.wait_finished(2)
    await fake.user_message(world.guild.channel, world.bob, "more snow", reply_to=image,
                            message_id=int(asked["id"]))
    await services.wait_finished(3)
    assert services.requests[1].idempotency_key == services.requests[2].idempotency_key == f"dc:m:{asked['id']}"
    assert services.duplicates == 1
    assert len(fake.calls_to("send_message")) == 1  # one reply, not two


async def test_message_refusal_is_a_reply(fake: FakeDiscord, world: World, bot: DiscordBot,
                                          services: FakeServices) -> None:
    services.refusal = Refusal("You are blocked from making images here.", "banned")
    asked = await fake.user_message(world.guild.channel, world.alice, "a fox", mention_bot=True)
    await services.wait_finished(1)
    [reply] = [m for m in fake.messages_in(world.guild.channel) if m.get("message_reference")]
    assert reply["content"] == "You are blocked from making images here." and not reply["components"]
    assert reply["message_reference"]["message_id"] == asked["id"]


async def test_message_progress_uses_one_status_message_that_becomes_the_result(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.positions = [1]
    services.previews = 1
    await fake.user_message(world.guild.channel, world.alice, "a fox", mention_bot=True)
    await services.wait_finished(1)
    assert len(fake.calls_to("send_message")) == 1
    status = fake.calls_to("send_message")[0]
    assert status.params["content"] == "Queued: you're next."
    final = fake.calls_to("edit_message")[-1]
    assert final.params["content"] == "#1 · 9 credits left today" and final.files["files[0]"] == services.result_image
    assert services.delivered == [[final.params["_path"]["message_id"]]]


async def test_edit_command_passes_the_uploaded_attachment(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    photo = png(50, 50, (200, 0, 0))
    interaction = await fake.slash_command(world.guild.channel, world.alice, "edit", {
        "instruction": "make it green", "image": ("red.png", photo, "image/png")})
    await services.wait_finished(1)
    request = services.requests[0]
    assert request.prompt == "make it green" and request.idempotency_key == f"dc:i:{interaction.id}"
    assert request.input_image is not None and request.input_image.filename == "red.png"
    assert request.input_image.declared_bytes == len(photo)
    assert services.fetched == [photo]
    assert fake.original(interaction) is not None


async def test_too_large_attachment_is_refused_before_downloading(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.max_input_bytes = 1000
    photo = png(200, 200, (1, 1, 1)) + b"\0" * 2000
    await fake.slash_command(world.guild.channel, world.alice, "edit", {
        "instruction": "x", "image": ("big.png", photo, "image/png")})
    followup = await fake.wait_for("followup")
    assert isinstance(services.fetched[0], BadInputImage)
    assert "too large" in followup.params["content"]
    assert not fake.calls_to("cdn")


async def test_attachment_larger_than_declared_is_cut_off(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.max_input_bytes = 5000
    photo = png(10, 10)
    interaction = await fake.slash_command(world.guild.channel, world.alice, "edit", {
        "instruction": "x", "image": ("liar.png", photo, "image/png")})
    # The CDN serves more than the payload declared.
    attachment = next(iter(interaction.payload["data"]["resolved"]["attachments"].values()))
    path = attachment["proxy_url"].removeprefix(fake.origin)
    fake.cdn[path] = (photo + b"\0" * 10_000, "image/png")
    await services.wait_finished(1)
    assert isinstance(services.fetched[0], BadInputImage)


async def test_every_message_easel_sends_disables_mass_mentions(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.caption = "#{n} · @everyone @here <@&123> · 9 credits left today"
    image = await _first_round(fake, world, services, prompt="@everyone look")
    await fake.user_message(world.guild.channel, world.bob, "@here again", reply_to=image)
    await services.wait_finished(2)
    services.refusal = Refusal("@everyone no", "x")
    await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "@everyone"})
    await fake.wait_for("followup")
    assert len(fake.sends()) >= 5
    assert_no_mass_mentions(fake)


async def test_deleted_status_message_does_not_lose_the_result(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.positions = [3]
    services.gate = asyncio.Event()
    await fake.user_message(world.guild.channel, world.alice, "a fox", mention_bot=True)
    await fake.wait_for("send_message")
    status = fake.messages_in(world.guild.channel)[-1]
    await fake.delete_message(status)
    services.gate.set()
    result = await fake.wait_for("send_message", count=2)
    await services.wait_finished(1)
    assert fake.calls_to("404 edit_message")
    assert result.files["files[0]"] == services.result_image
    assert services.delivered == [[fake.messages_in(world.guild.channel)[-1]["id"]]]


async def test_a_reply_the_instant_the_image_appears_resolves_from_its_button(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    image = await _first_round(fake, world, services)
    services.round_messages.clear()  # the message-to-round record is not written yet
    await fake.user_message(world.guild.channel, world.bob, "make it blue", reply_to=image)
    await services.wait_finished(2)
    request = services.requests[1]
    assert (request.parent_round, request.reply_to) == (1, image["id"])  # from `easel:reroll:1` on the image


async def test_a_reply_to_an_easel_message_without_a_result_button_falls_back_to_the_record(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    image = await _first_round(fake, world, services)
    image["components"] = [{"type": 1, "components": [
        {"type": 2, "style": 2, "label": "Cancel", "custom_id": "easel:cancel:1"}]}]  # not a result's button
    await fake.user_message(world.guild.channel, world.bob, "make it blue", reply_to=image)
    await services.wait_finished(2)
    assert (services.requests[1].parent_round, services.requests[1].reply_to) == (None, image["id"])
