"""The application commands of DESIGN §4, exactly: names, options and choice values are a tested contract."""

from __future__ import annotations

import logging
from typing import Literal

import discord
from discord import app_commands

from bots.discord.common import user_ref
from bots.discord.interactions import InteractionHandlers
from core.errors import GENERIC_APOLOGY
from core.events import Actor, Background, ChannelKey, DeskCommand, Quality, Shape, SpecOptions, Verb
from core.outcomes import Notice

log = logging.getLogger(__name__)

SizeChoice = Literal["square", "portrait", "landscape", "wide", "tall"]
QualityChoice = Literal["low", "medium", "high"]
BackgroundChoice = Literal["auto", "opaque", "transparent"]
LanguageChoice = Literal["auto", "en", "zh"]
Image = discord.Attachment | None
Target = discord.Member | discord.User  # a "user" option; a User in DMs


def build_tree(client: discord.Client, handlers: InteractionHandlers) -> app_commands.CommandTree[discord.Client]:
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
    desk = handlers.services.desk

    @tree.command(name="imagine", description="Create an image from a prompt")
    @app_commands.describe(prompt="What to draw", size="Shape of the image (default: square)",
                           quality="Detail; higher costs more credits (default: medium)",
                           background="transparent: a PNG with see-through background (default: auto)",
                           image1="A reference image", image2="A reference image", image3="A reference image",
                           image4="A reference image")
    async def imagine(interaction: discord.Interaction, prompt: str, size: SizeChoice | None = None,
                      quality: QualityChoice | None = None, background: BackgroundChoice | None = None,
                      image1: Image = None, image2: Image = None, image3: Image = None,
                      image4: Image = None) -> None:
        options = SpecOptions(shape=Shape(size) if size else None, quality=Quality(quality) if quality else None,
                              background=Background(background) if background else None)
        references = [a for a in (image1, image2, image3, image4) if a is not None]
        await handlers.imagine(interaction, prompt, options, references)

    @tree.command(name="edit", description="Edit an uploaded image with an instruction")
    @app_commands.describe(instruction="What to change", image="The image to edit",
                           image2="Another image to use", image3="Another image to use",
                           image4="Another image to use")
    async def edit(interaction: discord.Interaction, instruction: str, image: discord.Attachment,
                   image2: Image = None, image3: Image = None, image4: Image = None) -> None:
        references = [a for a in (image2, image3, image4) if a is not None]
        await handlers.edit(interaction, instruction, image, references)

    @tree.context_menu(name="Edit image")
    async def edit_image(interaction: discord.Interaction, message: discord.Message) -> None:
        await handlers.edit_menu(interaction, message)

    @tree.command(name="language", description="The language Easel speaks in this server (moderators)")
    @app_commands.describe(language="auto follows each member's Discord language")
    async def language(interaction: discord.Interaction, language: LanguageChoice | None = None) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.LANGUAGE, key, actor, idem, language=language))

        await handlers.notice(interaction, call, private=language is None)

    quota = app_commands.Group(name="quota", description="Credits: yours, or (moderators) anyone's")

    @quota.command(name="show", description="Credits left today (moderators: anyone's)")
    @app_commands.describe(user="Whose credits (moderators only; default: yours)")
    async def show(interaction: discord.Interaction, user: Target | None = None) -> None:
        async def call(key: ChannelKey, actor: Actor, _: str) -> Notice:
            return await desk.run(DeskCommand(Verb.SHOW, key, actor, _, user_ref(user) if user is not None else None))

        await handlers.notice(interaction, call, private=True)

    @quota.command(name="set", description="Moderators: set a member's daily credits (from today)")
    @app_commands.describe(user="The member", daily="Credits per day")
    async def set_daily(interaction: discord.Interaction, user: Target, daily: int) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.SET, key, actor, idem, user_ref(user), daily))

        await handlers.notice(interaction, call)

    @quota.command(name="grant", description="Moderators: give a member extra credits for today")
    @app_commands.describe(user="The member", credits="Extra credits for today")
    async def grant(interaction: discord.Interaction, user: Target, credits: int) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.GRANT, key, actor, idem, user_ref(user), credits))

        await handlers.notice(interaction, call)

    @quota.command(name="default", description="Moderators: daily credits for everyone in this server")
    @app_commands.describe(daily="Credits per member per day")
    async def default(interaction: discord.Interaction, daily: int) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.DEFAULT, key, actor, idem, amount=daily))

        await handlers.notice(interaction, call)

    @quota.command(name="ban", description="Moderators: stop a member from making images")
    @app_commands.describe(user="The member")
    async def ban(interaction: discord.Interaction, user: Target) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.BAN, key, actor, idem, user_ref(user)))

        await handlers.notice(interaction, call)

    @quota.command(name="unban", description="Moderators: let a member make images again")
    @app_commands.describe(user="The member")
    async def unban(interaction: discord.Interaction, user: Target) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.UNBAN, key, actor, idem, user_ref(user)))

        await handlers.notice(interaction, call)

    tree.add_command(quota)

    @tree.command(name="usage", description="Usage report for this server")
    async def usage(interaction: discord.Interaction) -> None:
        async def call(key: ChannelKey, actor: Actor, _: str) -> Notice:
            return await desk.run(DeskCommand(Verb.USAGE, key, actor, _))

        await handlers.notice(interaction, call, private=True)

    @tree.command(name="help", description="How to use Easel")
    async def help_(interaction: discord.Interaction) -> None:
        await handlers.help(interaction)

    @tree.error
    async def on_tree_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        # Only argument conversion or an unknown (stale) command gets here: handlers catch their own errors.
        log.error("application command failed: %s", type(error).__name__, exc_info=error)
        if not interaction.response.is_done():
            try:
                await interaction.response.send_message(GENERIC_APOLOGY, ephemeral=True)
            except discord.HTTPException:
                log.info("could not answer interaction %s", interaction.id)

    return tree
