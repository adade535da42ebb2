"""Slash commands and button presses: acknowledge at once, translate, call the core, render its answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import discord

from bots.discord.common import (
    AttachmentFetcher,
    interaction_actor,
    interaction_key,
    interaction_language,
    is_image,
    plain,
)
from bots.discord.communities import CommunityGate
from bots.discord.views import InteractionRoundView, guarded, result_round
from core.events import Actor, ChannelKey, Platform, RoundRequest, SpecOptions
from core.outcomes import Notice, Refusal, RoundView
from core.ports import Services
from core.safety import answered
from core.texts import pick_language, say

log = logging.getLogger(__name__)

RoundCall = Callable[[ChannelKey, Actor, str, RoundView], Awaitable[None]]
NoticeCall = Callable[[ChannelKey, Actor, str], Awaitable[Notice]]


def interaction_idempotency_key(interaction: discord.Interaction) -> str:
    return f"dc:i:{interaction.id}"


async def acknowledge(interaction: discord.Interaction, *, ephemeral: bool = False) -> bool:
    """Defer with "thinking" before any other work (3-second window). False when Discord says the interaction
    is gone (10062: too late) or already answered (40060: a redelivered event): then do nothing at all."""
    try:
        await interaction.response.defer(thinking=True, ephemeral=ephemeral)
    except discord.InteractionResponded:
        return False
    except discord.HTTPException as exc:
        if exc.code in (10062, 40060):
            log.info("interaction %s not acknowledged (Discord code %s): skipped", interaction.id, exc.code)
        else:
            log.exception("could not acknowledge interaction %s", interaction.id)
        return False
    return True


class InteractionHandlers:
    """One method per verb; the command tree and the buttons call these."""

    def __init__(self, services: Services, fetcher: AttachmentFetcher, gate: CommunityGate) -> None:
        self.services = services
        self.fetcher = fetcher
        self.gate = gate

    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: str,
        options: SpecOptions,
        references: Sequence[discord.Attachment] = (),
    ) -> None:
        inputs = tuple(self.fetcher.input_image(a) for a in references)

        async def call(key: ChannelKey, actor: Actor, idem: str, view: RoundView) -> None:
            request = RoundRequest(key, actor, prompt, idem, options=options, references=inputs)
            await self.services.rounds.submit(request, view)

        await self._round(interaction, call)

    async def edit(
        self,
        interaction: discord.Interaction,
        instruction: str,
        image: discord.Attachment | None,
        references: Sequence[discord.Attachment] = (),
        *,
        reply_to: str | None = None,
        parent_round: int | None = None,
    ) -> None:
        """An edit of an uploaded image, or (`reply_to`) of one of Easel's results, keeping its lineage."""
        input_image = self.fetcher.input_image(image) if image is not None else None
        inputs = tuple(self.fetcher.input_image(a) for a in references)

        async def call(key: ChannelKey, actor: Actor, idem: str, view: RoundView) -> None:
            request = RoundRequest(
                key,
                actor,
                instruction,
                idem,
                reply_to=reply_to,
                parent_round=parent_round,
                input_image=input_image,
                references=inputs,
            )
            await self.services.rounds.submit(request, view)

        await self._round(interaction, call)

    async def edit_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The `Edit image` message command: a modal asks what to change (opening it is the acknowledgement)."""
        lang = interaction_language(interaction)
        image = next((a for a in message.attachments if is_image(a)), None)
        try:
            if image is None:
                await interaction.response.send_message(say(lang, "dc.edit.no_image"), ephemeral=True)
                return
            reply_to, parent_round = None, None
            me = interaction.client.user
            if me is not None and message.author.id == me.id:
                parent_round = result_round(message)
                if parent_round is not None or await self.services.rounds.is_round_message(
                    interaction_key(interaction), str(message.id)
                ):
                    reply_to, image = str(message.id), None  # one of Easel's rounds: continue its lineage
            await interaction.response.send_modal(EditModal(self, lang, image, reply_to, parent_round))
        except discord.HTTPException:
            log.info("could not answer the Edit image interaction %s", interaction.id)

    async def press(self, interaction: discord.Interaction, action: str) -> None:
        if not await self.gate.admit(interaction):
            return

        async def call(key: ChannelKey, actor: Actor, idem: str, view: RoundView) -> None:
            await self.services.rounds.press(action, key, actor, idem, view)

        # Cancel answers only the presser (if at all): the round itself says it was cancelled.
        await self._round(interaction, call, private=action.startswith("cancel:"))

    async def notice(
        self, interaction: discord.Interaction, call: NoticeCall, *, private: bool = False, report: bool = False
    ) -> None:
        """Quota verbs and /usage: the core answers with a Notice or a UserFacingError. `private`: the answer
        is expected to be for the asker only, so the "thinking" message is ephemeral from the start. `report`
        (/usage): a moderator's community totals are public in a server, the per-user figures (`detail`) go to
        the moderator alone; anyone else's own usage is private."""
        public_report = report and interaction.guild_id is not None and interaction_actor(interaction).is_moderator
        private = private or (report and not public_report)
        if not await acknowledge(interaction, ephemeral=private):
            return
        lang = self.language(interaction)
        view = InteractionRoundView(interaction, deferred_ephemeral=private, lang=lang)
        key, actor = interaction_key(interaction), interaction_actor(interaction)
        refused = False

        async def work() -> Notice:
            await self.services.desk.seen(actor, key.community)
            return await call(key, actor, interaction_idempotency_key(interaction))

        async def refuse(refusal: Refusal) -> None:
            nonlocal refused
            refused = True
            await view.say(refusal.text, ephemeral=refusal.ephemeral)

        what = f"interaction {interaction.id} (/{_command_name(interaction)})"
        notice = await answered(work(), lang=lang, refuse=refuse, what=what)
        if notice is None:
            if not refused:  # a redelivery: take back the "thinking…" and say nothing
                await view.abandon()
            return
        await view.say(notice.text, ephemeral=notice.ephemeral and not public_report)
        if notice.detail:  # for the asker's eyes only
            await view.say(notice.detail, ephemeral=True, followup=True)

    async def help(self, interaction: discord.Interaction) -> None:
        # Pure text: answering directly is the acknowledgement.
        text = self.services.desk.help_text(Platform.DISCORD, interaction_language(interaction))
        try:
            await interaction.response.send_message(plain(text), ephemeral=True)
        except discord.HTTPException:
            log.info("could not answer /help interaction %s", interaction.id)
            return
        key, actor = interaction_key(interaction), interaction_actor(interaction)
        try:
            await self.services.desk.seen(actor, key.community)
        except Exception:
            log.exception("could not record %s as seen", actor.user_id)

    def language(self, interaction: discord.Interaction) -> str:
        """The asker's client language when Easel speaks it, else the operator's default: for what the
        adapter says itself (the core renders its own answers)."""
        return pick_language(interaction.locale.value, None, self.gate.settings.language)

    async def _round(self, interaction: discord.Interaction, call: RoundCall, *, private: bool = False) -> None:
        if not await acknowledge(interaction, ephemeral=private):
            return
        view = InteractionRoundView(interaction, deferred_ephemeral=private, lang=self.language(interaction))
        key, actor = interaction_key(interaction), interaction_actor(interaction)

        async def work() -> None:
            await self.services.desk.seen(actor, key.community)
            await call(key, actor, interaction_idempotency_key(interaction), view)

        await guarded(view, work(), f"interaction {interaction.id} ({_command_name(interaction)})")
        if not view.finished:
            await view.abandon()


def _command_name(interaction: discord.Interaction) -> str:
    command = interaction.command
    return f"/{command.qualified_name}" if command is not None else "button"


class EditModal(discord.ui.Modal):
    """Asks what to change in the image of the message `Edit image` was used on."""

    def __init__(
        self,
        handlers: InteractionHandlers,
        lang: str,
        image: discord.Attachment | None,
        reply_to: str | None,
        parent_round: int | None = None,
    ) -> None:
        super().__init__(title=say(lang, "dc.edit.modal_title")[:45], timeout=900)
        self.handlers, self.image, self.reply_to = handlers, image, reply_to
        self.parent_round = parent_round
        self.instruction: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
            label=say(lang, "dc.edit.field_label")[:45],
            placeholder=say(lang, "dc.edit.field_placeholder")[:100],
            style=discord.TextStyle.paragraph,
            max_length=4000,
        )
        self.add_item(self.instruction)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.handlers.edit(
            interaction, self.instruction.value, self.image, reply_to=self.reply_to, parent_round=self.parent_round
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        log.error("the Edit image modal failed", exc_info=error)
