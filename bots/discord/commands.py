"""The application commands of DESIGN §4, exactly: names, options and choice values are a tested contract."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import discord
from discord import app_commands

from bots.discord.common import user_ref
from bots.discord.interactions import InteractionHandlers
from core.errors import APOLOGY_ID
from core.events import Actor, Background, ChannelKey, DeskCommand, Quality, Shape, SpecOptions, Verb
from core.outcomes import Notice
from core.texts import say
from core.texts.commands import description, discord_localizations

log = logging.getLogger(__name__)

DISCORD_KEY = "dc."  # the catalog's keys of Discord command descriptions (core/texts/commands.py)
DESCRIPTIONS = frozenset({
    app_commands.TranslationContextLocation.command_description,
    app_commands.TranslationContextLocation.group_description,
    app_commands.TranslationContextLocation.parameter_description,
})

# Choices are listed explicitly, not as `Literal[...]` annotations: typing caches Literals by their set of
# values, so another library's `Literal["transparent", "opaque", "auto"]` (the openai SDK has one) would
# reorder ours at random, depending on import order.
def _choices(values: Iterable[str]) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=value, value=value) for value in values]


SIZES = _choices(shape.value for shape in Shape)
QUALITIES = _choices(quality.value for quality in Quality)
BACKGROUNDS = _choices(background.value for background in Background)
LANGUAGES = _choices(("auto", "en", "zh"))
Image = discord.Attachment | None
Target = discord.Member | discord.User  # a "user" option; a User in DMs


def d(key: str) -> app_commands.locale_str:
    """A command or option description: English from the catalog, its key kept for `CatalogTranslator`."""
    return app_commands.locale_str(description(DISCORD_KEY + key), key=DISCORD_KEY + key)


def described(command: str, *options: str) -> dict[str, app_commands.locale_str]:
    """`describe(**described("imagine", "prompt", ...))`: each option's description by its catalog key."""
    return {option: d(f"{command}.{option}") for option in options}


class CatalogTranslator(app_commands.Translator):
    """Fills `description_localizations` (zh-CN, zh-TW) from the catalog at registration. Names (of commands,
    options and choices) are the contract and are never translated."""

    async def translate(self, string: app_commands.locale_str, locale: discord.Locale,
                        context: app_commands.TranslationContextTypes) -> str | None:
        key = string.extras.get("key")
        if context.location not in DESCRIPTIONS or not isinstance(key, str):
            return None
        return discord_localizations(key).get(locale.value)


class EaselTree(app_commands.CommandTree[discord.Client]):
    """The command tree; a command in a server outside `EASEL_COMMUNITIES` is answered privately, then Easel
    leaves that server."""

    def __init__(self, client: discord.Client, handlers: InteractionHandlers) -> None:
        super().__init__(client)
        self.handlers = handlers

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await self.handlers.gate.admit(interaction)


def build_tree(client: discord.Client, handlers: InteractionHandlers) -> app_commands.CommandTree[discord.Client]:
    tree: app_commands.CommandTree[discord.Client] = EaselTree(client, handlers)
    desk = handlers.services.desk

    @tree.command(name="imagine", description=d("imagine"))
    @app_commands.describe(**described("imagine", "prompt", "size", "quality", "background", "image1", "image2",
                                       "image3", "image4"))
    @app_commands.choices(size=SIZES, quality=QUALITIES, background=BACKGROUNDS)
    async def imagine(interaction: discord.Interaction, prompt: str, size: str | None = None,
                      quality: str | None = None, background: str | None = None,
                      image1: Image = None, image2: Image = None, image3: Image = None,
                      image4: Image = None) -> None:
        options = SpecOptions(shape=Shape(size) if size else None, quality=Quality(quality) if quality else None,
                              background=Background(background) if background else None)
        references = [a for a in (image1, image2, image3, image4) if a is not None]
        await handlers.imagine(interaction, prompt, options, references)

    @tree.command(name="edit", description=d("edit"))
    @app_commands.describe(**described("edit", "instruction", "image", "image2", "image3", "image4"))
    async def edit(interaction: discord.Interaction, instruction: str, image: discord.Attachment,
                   image2: Image = None, image3: Image = None, image4: Image = None) -> None:
        references = [a for a in (image2, image3, image4) if a is not None]
        await handlers.edit(interaction, instruction, image, references)

    @tree.context_menu(name="Edit image")
    async def edit_image(interaction: discord.Interaction, message: discord.Message) -> None:
        await handlers.edit_menu(interaction, message)

    @tree.command(name="language", description=d("language"))
    @app_commands.describe(**described("language", "language"))
    @app_commands.choices(language=LANGUAGES)
    async def language(interaction: discord.Interaction, language: str | None = None) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.LANGUAGE, key, actor, idem, language=language))

        await handlers.notice(interaction, call, private=language is None)

    quota = app_commands.Group(name="quota", description=d("quota"))

    @quota.command(name="show", description=d("quota.show"))
    @app_commands.describe(**described("quota.show", "user"))
    async def show(interaction: discord.Interaction, user: Target | None = None) -> None:
        async def call(key: ChannelKey, actor: Actor, _: str) -> Notice:
            return await desk.run(DeskCommand(Verb.SHOW, key, actor, _, user_ref(user) if user is not None else None))

        await handlers.notice(interaction, call, private=True)

    @quota.command(name="set", description=d("quota.set"))
    @app_commands.describe(**described("quota.set", "user", "daily"))
    async def set_daily(interaction: discord.Interaction, user: Target, daily: int) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.SET, key, actor, idem, user_ref(user), daily))

        await handlers.notice(interaction, call)

    @quota.command(name="grant", description=d("quota.grant"))
    @app_commands.describe(**described("quota.grant", "user", "credits"))
    async def grant(interaction: discord.Interaction, user: Target, credits: int) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.GRANT, key, actor, idem, user_ref(user), credits))

        await handlers.notice(interaction, call)

    @quota.command(name="default", description=d("quota.default"))
    @app_commands.describe(**described("quota.default", "daily"))
    async def default(interaction: discord.Interaction, daily: int) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.DEFAULT, key, actor, idem, amount=daily))

        await handlers.notice(interaction, call)

    @quota.command(name="ban", description=d("quota.ban"))
    @app_commands.describe(**described("quota.ban", "user"))
    async def ban(interaction: discord.Interaction, user: Target) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.BAN, key, actor, idem, user_ref(user)))

        await handlers.notice(interaction, call)

    @quota.command(name="unban", description=d("quota.unban"))
    @app_commands.describe(**described("quota.unban", "user"))
    async def unban(interaction: discord.Interaction, user: Target) -> None:
        async def call(key: ChannelKey, actor: Actor, idem: str) -> Notice:
            return await desk.run(DeskCommand(Verb.UNBAN, key, actor, idem, user_ref(user)))

        await handlers.notice(interaction, call)

    tree.add_command(quota)

    @tree.command(name="usage", description=d("usage"))
    async def usage(interaction: discord.Interaction) -> None:
        async def call(key: ChannelKey, actor: Actor, _: str) -> Notice:
            return await desk.run(DeskCommand(Verb.USAGE, key, actor, _))

        await handlers.notice(interaction, call, report=True)

    @tree.command(name="help", description=d("help"))
    async def help_(interaction: discord.Interaction) -> None:
        await handlers.help(interaction)

    @tree.error
    async def on_tree_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        # Only argument conversion or an unknown (stale) command gets here: handlers catch their own errors.
        log.error("application command failed: %s", type(error).__name__, exc_info=error)
        if not interaction.response.is_done():
            try:
                await interaction.response.send_message(say(handlers.language(interaction), APOLOGY_ID), ephemeral=True)
            except discord.HTTPException:
                log.info("could not answer interaction %s", interaction.id)

    return tree
