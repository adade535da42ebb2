"""`EASEL_COMMUNITIES` on Discord: outside the listed servers Easel answers once that it is private, and leaves.

A server that is not listed is left as soon as Easel joins it (`on_guild_join`); one it is already in (the list
changed since) is left at the first command, button or mention there, answered with the catalog's
`service.private` (ephemeral for interactions). A DM is its own community: the core decides there (only
operators are served when the list is set), since there is nothing to leave."""

from __future__ import annotations

import contextlib
import logging

import discord

from bots.discord.common import interaction_language, plain
from core import texts
from core.events import Platform
from core.settings import Settings
from core.texts import say

log = logging.getLogger(__name__)

PRIVATE = "service.private"


class CommunityGate:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._leaving: set[int] = set()

    def serves(self, guild_id: int | None) -> bool:
        """True in a listed server, in any server when the list is unset, and in DMs (the core decides)."""
        return guild_id is None or self.settings.serves(Platform.DISCORD, str(guild_id))

    async def admit(self, interaction: discord.Interaction) -> bool:
        """False (after answering privately and leaving the server) when the interaction's server is not served."""
        if self.serves(interaction.guild_id):
            return True
        with contextlib.suppress(discord.HTTPException):
            await interaction.response.send_message(say(interaction_language(interaction), PRIVATE), ephemeral=True)
        await self.leave(interaction.client, interaction.guild_id)
        return False

    async def admit_message(self, client: discord.Client, message: discord.Message) -> bool:
        """Like `admit`, for a message meant for Easel (a mention or a reply to its image)."""
        guild = message.guild
        if guild is None or self.serves(guild.id):
            return True
        if guild.id not in self._leaving:  # answer once: the server is being left
            lang = texts.pick_language(guild.preferred_locale.value, None, self.settings.language)
            with contextlib.suppress(discord.HTTPException):
                await message.channel.send(plain(say(lang, PRIVATE)),
                                           reference=message.to_reference(fail_if_not_exists=False))
        await self.leave(client, guild.id)
        return False

    async def on_join(self, client: discord.Client, guild: discord.Guild) -> None:
        if not self.serves(guild.id):
            await self.leave(client, guild.id)

    async def leave(self, client: discord.Client, guild_id: int | None) -> None:
        if guild_id is None or guild_id in self._leaving:
            return
        self._leaving.add(guild_id)
        try:
            await client.http.leave_guild(guild_id)
            log.info("Discord: left server %s (not in EASEL_COMMUNITIES)", guild_id)
        except discord.HTTPException:
            self._leaving.discard(guild_id)
            log.warning("Discord: could not leave server %s", guild_id, exc_info=True)
