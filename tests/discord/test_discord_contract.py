"""The Discord pieces of the chat contract (DESIGN §4) through the real discord.py against the fake server:
image options and reference images, /edit with more images, the Edit image context menu and its modal,
Cancel on the progress message, /language, the client's locale, transparent results kept as PNG."""

from __future__ import annotations

import asyncio

from bots.discord.bot import DiscordBot
from core.events import Background, Quality, Shape, SpecOptions, Verb
from tests.discord.discord_support import World, answer, buttons, png
from tests.discord.menu_fake import MenuDiscord
from tests.fakes.fake_provider import transparent_png
from tests.fakes.fake_services import FakeServices


async def test_imagine_options_and_reference_images(fake: MenuDiscord, world: World, bot: DiscordBot,
                                                    services: FakeServices) -> None:
    first, second = png(8, 8, (1, 2, 3)), png(9, 9, (4, 5, 6))
    await fake.slash_command(world.guild.channel, world.alice, "imagine", {
        "prompt": "a poster", "size": "wide", "quality": "low", "background": "opaque",
        "image1": ("a.png", first, "image/png"), "image3": ("b.png", second, "image/png")})
    await services.wait_finished(1)
    request = services.requests[0]
    assert request.options == SpecOptions(Shape.WIDE, Quality.LOW, Background.OPAQUE)
    assert request.input_image is None and len(request.references) == 2
    assert [await r.fetch(1_000_000) for r in request.references] == [first, second]


async def test_edit_takes_further_images(fake: MenuDiscord, world: World, bot: DiscordBot,
                                         services: FakeServices) -> None:
    base, extra = png(10, 10, (9, 9, 9)), png(11, 11, (7, 7, 7))
    await fake.slash_command(world.guild.channel, world.alice, "edit", {
        "instruction": "put the hat on the cat", "image": ("cat.png", base, "image/png"),
        "image2": ("hat.png", extra, "image/png")})
    await services.wait_finished(1)
    request = services.requests[0]
    assert request.prompt == "put the hat on the cat" and services.fetched == [base]
    assert [await r.fetch(1_000_000) for r in request.references] == [extra]


async def test_edit_image_menu_opens_a_modal_then_edits_that_image(
    fake: MenuDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    photo = png(12, 12, (200, 0, 0))
    posted = await fake.user_message(world.guild.channel, world.bob, "my drawing",
                                     attachments=[("mine.png", photo, "image/png")])
    menu = await fake.message_command(world.guild.channel, world.alice, "Edit image", posted, locale="zh-CN")
    await fake.wait_until(lambda: menu.id in fake.modals, what="the modal")
    modal = fake.modals[menu.id]
    assert modal["title"] == "修改图片"  # the asker's client language
    assert not services.requests  # nothing is asked of the core before the instruction
    submitted = await fake.submit_modal(menu, "make it blue")
    await services.wait_finished(1)
    request = services.requests[0]
    assert (request.prompt, request.reply_to, services.fetched) == ("make it blue", None, [photo])
    assert request.actor.user_id == str(world.alice.id) and request.actor.locale == "zh-CN"
    assert request.idempotency_key == f"dc:i:{submitted.id}"
    assert (await answer(fake, submitted))["attachments"]


async def test_edit_image_on_easels_result_continues_that_round(
    fake: MenuDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished(1)
    result = fake.original(interaction)
    assert result is not None
    menu = await fake.message_command(world.guild.channel, world.bob, "Edit image", result)
    await fake.wait_until(lambda: menu.id in fake.modals, what="the modal")
    assert fake.modals[menu.id]["title"] == "Edit image"
    await fake.submit_modal(menu, "give it a hat")
    await services.wait_finished(2)
    request = services.requests[1]
    assert (request.prompt, request.reply_to, request.input_image) == ("give it a hat", result["id"], None)
    assert request.parent_round == 1  # from the result's Reroll button


async def test_edit_image_on_a_message_without_an_image_says_so(
    fake: MenuDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    posted = await fake.user_message(world.guild.channel, world.bob, "just words")
    menu = await fake.message_command(world.guild.channel, world.alice, "Edit image", posted)
    shown = await answer(fake, menu)
    assert shown["content"].startswith("There is no image in that message") and fake.is_ephemeral(shown)
    assert menu.id not in fake.modals and not services.requests


async def test_cancel_button_on_the_progress_message(fake: MenuDiscord, world: World, bot: DiscordBot,
                                                     services: FakeServices) -> None:
    services.gate = asyncio.Event()
    services.positions = [1]
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a slow fox"})
    await services.wait_live(1)
    progress = fake.original(interaction)
    assert progress is not None and buttons(progress) == [("Cancel", "easel:cancel:1")]
    press = await fake.click_button(progress, world.alice, "easel:cancel:1")
    await services.wait_finished(2)
    pressed = services.presses[0]
    assert (pressed.action, pressed.actor.user_id, pressed.idempotency_key) == (
        "cancel:1", str(world.alice.id), f"dc:i:{press.id}")
    shown = fake.original(interaction)
    assert shown is not None and shown["content"] == "#1 was cancelled." and not shown["components"]
    assert not fake.replies(press)  # the presser's "thinking" is removed: the round itself says it
    assert services.delivered == []


async def test_language_command_is_a_desk_command(fake: MenuDiscord, world: World, bot: DiscordBot,
                                                  services: FakeServices) -> None:
    shown = await answer(fake, await fake.slash_command(world.guild.channel, world.mod, "language",
                                                        {"language": "zh"}))
    command = services.desk_commands[0]
    assert (command.verb, command.language, command.actor.is_moderator) == (Verb.LANGUAGE, "zh", True)
    assert command.key.community == str(world.guild.id)
    assert shown["content"] == "language zh" and not fake.is_ephemeral(shown)
    refused = await answer(fake, await fake.slash_command(world.guild.channel, world.alice, "language",
                                                          {"language": "en"}))
    assert refused["content"].startswith("Only moderators") and fake.is_ephemeral(refused)


async def test_transparent_result_is_uploaded_as_the_png_it_is(
    fake: MenuDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.result_image = transparent_png(64, 64)
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine",
                                           {"prompt": "a sticker", "background": "transparent"})
    await services.wait_finished(1)
    assert services.requests[0].options.background is Background.TRANSPARENT
    final = fake.calls_to("edit_original")[-1]
    assert final.files["files[0]"] == services.result_image  # byte for byte: alpha kept
    message = fake.original(interaction)
    assert message is not None and message["attachments"][0]["filename"] == "easel-1.png"
