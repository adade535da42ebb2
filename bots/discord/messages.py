"""Chat messages: a reply to one of Easel's images is the next edit round; mentioning Easel (or writing to it in
a DM) with text makes an image, and with an attached image edits that image."""

from __future__ import annotations

import contextlib
import logging

import discord

from bots.discord.common import (
    AttachmentFetcher,
    actor_of,
    channel_key,
    is_image,
    mentions,
    strip_mentions,
)
from bots.discord.communities import CommunityGate
from bots.discord.views import MessageRoundView, guarded, result_round
from core.events import RoundRequest
from core.ports import Services

log = logging.getLogger(__name__)

_CHAT_TYPES = (discord.MessageType.default, discord.MessageType.reply)


class MessageHandler:
    def __init__(
        self, client: discord.Client, services: Services, fetcher: AttachmentFetcher, gate: CommunityGate
    ) -> None:
        self.client = client
        self.gate = gate
        self.services = services
        self.fetcher = fetcher

    async def on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None or message.author.bot or message.webhook_id is not None or message.type not in _CHAT_TYPES:
            return
        request = await self._request(message, me.id)
        if request is None or not await self.gate.admit_message(self.client, message):
            return
        view = MessageRoundView(message, lang=self.gate.settings.language)
        with contextlib.suppress(discord.HTTPException):
            # "Request taken", before any other work; the status message (stage, elapsed time) follows.
            await message.channel.typing()

        async def work() -> None:
            await self.services.desk.seen(request.actor, request.key.community)
            await self.services.rounds.submit(request, view)

        await guarded(view, work(), f"message {message.id}")

    async def _request(self, message: discord.Message, me: int) -> RoundRequest | None:
        key = channel_key(message.guild.id if message.guild else None, message.channel.id)
        actor = actor_of(message.author)
        prompt = strip_mentions(message.content, me)
        idem = f"dc:m:{message.id}"
        parent = await self._referenced(message)
        rounds = self.services.rounds
        if parent is not None and parent.author.id == me:
            # One of Easel's results: the round from its button at once, else from the message record.
            round_id = result_round(parent)
            if round_id is not None or await rounds.is_round_message(key, str(parent.id)):
                return RoundRequest(key, actor, prompt, idem, reply_to=str(parent.id), parent_round=round_id)
        if not (message.guild is None or mentions(message.content, me)):
            return None
        # The images: attached to this message (all of them: the first is edited, the others are references;
        # more than the core takes is refused there, at no cost), else on the (non-Easel) message it replies to.
        sources = [message] + ([parent] if parent is not None and parent.author.id != me else [])
        images = next(
            ([a for a in m.attachments if is_image(a)] for m in sources if any(map(is_image, m.attachments))), []
        )
        if not prompt and not images:
            return None
        inputs = [self.fetcher.input_image(image) for image in images]
        first, rest = (inputs[0], tuple(inputs[1:])) if inputs else (None, ())
        return RoundRequest(key, actor, prompt, idem, input_image=first, references=rest)

    async def _referenced(self, message: discord.Message) -> discord.Message | None:
        """The message this one replies to: from the payload or the cache, else fetched."""
        ref = message.reference
        if ref is None or ref.message_id is None or ref.type is not discord.MessageReferenceType.reply:
            return None
        if isinstance(ref.resolved, discord.Message):
            return ref.resolved
        if isinstance(ref.resolved, discord.DeletedReferencedMessage) or ref.channel_id != message.channel.id:
            return None
        if ref.cached_message is not None:
            return ref.cached_message
        try:
            return await message.channel.fetch_message(ref.message_id)
        except (discord.NotFound, discord.Forbidden):
            return None
