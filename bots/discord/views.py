"""How one round looks on Discord: the core's RoundView for interactions and for message replies, and the
persistent buttons under every result."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import re
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import discord

from bots.discord.common import DEFAULT_UPLOAD_LIMIT, Upload, clip, fitted_image, plain, sniff_extension
from core import texts
from core.outcomes import Button, Preview, ProgressDefaults, Refusal, RoundInfo, RoundResult, Stage
from core.safety import answered

log = logging.getLogger(__name__)

EDIT_INTERVAL = 2.5  # seconds between preview edits of one message (platform-limits D-b)
QUEUE_INTERVAL = 10.0  # seconds between edits for a new queue position or stage (issue 16: no chatter)
# A slash command's round that waits less than this for a provider slot shows no queue position: Discord's
# "Easel is thinking…" already says it is on its way, and the position would be stale before it was read.
QUEUE_GRACE = 2.0
SETTLE_GRACE = 2.0  # seconds the result waits for a queue-position edit already on the wire
# Interaction tokens live 15 minutes (D-f); past this age a result goes to the channel instead.
TOKEN_SAFE_AGE = timedelta(minutes=14)
CUSTOM_ID_PREFIX = "easel:"
# The interaction's response cannot be edited any more: token expired (50027), webhook gone (10015), or the
# "thinking" message was deleted (10008). The result then goes to the channel.
GONE_CODES = (10008, 10015, 50027)


class EaselButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"easel:(?P<action>[!-~]{1,94})"):
    """A result button. The custom id carries the core's action (e.g. `reroll:42`), so presses work after a
    restart: discord.py matches the template, the database resolves the round."""

    def __init__(self, action: str, label: str | None) -> None:
        super().__init__(
            discord.ui.Button(label=label, style=discord.ButtonStyle.secondary, custom_id=CUSTOM_ID_PREFIX + action)
        )
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> EaselButton:
        label = item.label if isinstance(item, discord.ui.Button) else None
        return cls(match["action"], label)

    async def callback(self, interaction: discord.Interaction) -> None:
        # The client turns this into `on_easel_press` (a task with its own error handling).
        interaction.client.dispatch("easel_press", interaction, self.action)


_RESULT_BUTTON = re.compile(r"easel:reroll:([0-9]{1,18})")


def result_round(message: discord.Message) -> int | None:
    """The round a result message shows, read from its Reroll button's custom id (`easel:reroll:<id>`): known
    the moment the message is visible, before the message-to-round record is written. Only for Easel's own
    messages (the caller checks the author)."""
    for row in message.components:
        for item in getattr(row, "children", ()):
            found = _RESULT_BUTTON.fullmatch(getattr(item, "custom_id", None) or "")
            if found:
                return int(found[1])
    return None


def buttons_view(buttons: tuple[Button, ...]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for button in buttons[:25]:
        if len(CUSTOM_ID_PREFIX + button.action) > 100 or not re.fullmatch(r"[!-~]{1,94}", button.action):
            log.error("button action %r does not fit a Discord custom id; left out", button.action)
            continue
        view.add_item(EaselButton(button.action, clip(button.label, 80)))
    return view


def preview_file(preview: Preview) -> discord.File:
    return discord.File(io.BytesIO(preview.image), filename=f"preview-{preview.index}.{sniff_extension(preview.image)}")


def meaningful_move(shown: int, now: int) -> bool:
    """Is a new queue position worth an edit? Forward moves only: into the last three places, or by a quarter
    of the shown position (at least 2 places)."""
    return now < shown and (now <= 3 or shown - now >= max(2, shown // 4))


class Progress:
    """What a round's progress message says and when it may change: the first status always shows (with the
    Cancel button); a queue position that moved meaningfully, or a new stage, at most every `QUEUE_INTERVAL`
    seconds; previews every `EDIT_INTERVAL`. The elapsed time is a Discord timestamp (`<t:…:R>`) that every
    client keeps counting by itself, so it costs no edits."""

    def __init__(self, edit_interval: float, queue_interval: float) -> None:
        self.edit_interval, self.queue_interval = edit_interval, queue_interval
        self.lang = texts.DEFAULT_LANGUAGE
        self.shown = False
        self._last = -math.inf
        self._said: str | None = None
        self._previewed = False
        self._since = int(time.time())
        self.position: int | None = None  # the queue position the message shows

    def due(self, interval: float) -> bool:
        return not self.shown or time.monotonic() - self._last >= interval

    def shows(self, text: str) -> None:
        self.shown, self._said, self._last = True, text, time.monotonic()

    def fresh(self, text: str, interval: float) -> bool:
        """True when `text` should be shown now (it says something new and the pace allows it)."""
        return text != self._said and self.due(interval)

    def move_due(self, position: int) -> bool:
        """A later queue position: shown when it moved meaningfully and the pace allows it."""
        return self.position is not None and meaningful_move(self.position, position) and self.due(self.queue_interval)

    def queued(self, position: int) -> str:
        ahead = position - 1
        if ahead <= 0:
            return texts.say(self.lang, "progress.next")
        return texts.say(self.lang, "progress.queued", count=ahead)

    def stage(self, stage: Stage) -> str:
        if stage is Stage.QUEUED:
            return texts.say(self.lang, "progress.next")
        if stage is Stage.SENDING:
            return texts.say(self.lang, "progress.sending")
        return texts.say(self.lang, f"progress.{stage.value}", elapsed=f"<t:{self._since}:R>")

    def running(self) -> str:
        self.position = None
        self._since = int(time.time())
        return self.stage(Stage.THINKING)

    def preview_due(self) -> bool:
        """The first preview always shows; later ones every `edit_interval`."""
        return not self._previewed or self.due(self.edit_interval)

    def preview(self) -> str:
        self._previewed = True
        return texts.say(self.lang, "progress.preview")


class InteractionRoundView(ProgressDefaults):
    """A round answered through an interaction that was deferred with `thinking`: progress and the result
    edit the original response; a late result (token about to expire) goes to the channel instead."""

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        deferred_ephemeral: bool = False,
        edit_interval: float = EDIT_INTERVAL,
        token_safe_age: timedelta = TOKEN_SAFE_AGE,
        lang: str = texts.DEFAULT_LANGUAGE,
    ) -> None:
        self.interaction = interaction
        self.deferred_ephemeral = deferred_ephemeral  # how the "thinking" message was made
        self.finished = False  # deliver or refuse happened
        self.pace = Progress(edit_interval, QUEUE_INTERVAL)
        self.pace.lang = lang  # the asker's until the core names the round's (`begin`)
        self._token_safe_age = token_safe_age
        self._progress_id: str | None = None
        self.queue_grace = QUEUE_GRACE
        self._position: int | None = None  # the latest queue position, while the round waits
        self._waiting: asyncio.Task[None] | None = None  # shows the first position once the grace is over
        self._waiting_on_wire = False

    def language(self) -> str:
        """The round's language once the core named it, else the asker's."""
        return self.pace.lang

    def token_fresh(self) -> bool:
        return discord.utils.utcnow() - self.interaction.created_at < self._token_safe_age

    def progress_message(self) -> str | None:
        return self._progress_id

    async def begin(self, info: RoundInfo) -> None:
        self.info, self.pace.lang = info, info.lang  # shown with the first status (no request of its own)

    async def queued(self, position: int) -> None:
        """The first position shows only if the round still waits after `queue_grace` seconds (a task of its
        own: the core's progress calls never wait); later ones when they move meaningfully, every 10 s at most."""
        self._position = position
        if self.finished or not self.token_fresh():
            return
        if not self.pace.shown:
            if self._waiting is None:
                self._waiting = asyncio.get_running_loop().create_task(self._show_waiting())
        elif self.pace.move_due(position):
            await self._show_position(position)

    async def _show_waiting(self) -> None:
        await asyncio.sleep(self.queue_grace)
        position = self._position
        if position is None or self.finished or self.pace.shown or not self.token_fresh():
            return
        self._waiting_on_wire = True
        try:
            await self._show_position(position)
        except Exception:
            log.warning("queue position edit failed for interaction %s", self.interaction.id, exc_info=True)

    async def _show_position(self, position: int) -> None:
        self.pace.position = position
        await self._progress(self.pace.queued(position))

    async def _stop_waiting(self) -> None:
        """The round stopped waiting: a position not shown yet never will be; one on the wire lands first (for
        a short while), so that it never overwrites what comes next."""
        self._position = None
        task = self._waiting
        if task is None or task.done():
            return
        if not self._waiting_on_wire:
            task.cancel()  # still in its grace: it will not edit
            return
        await asyncio.wait({task}, timeout=SETTLE_GRACE)
        if not task.done():
            task.cancel()

    async def started(self) -> None:
        await self._stop_waiting()
        if self.token_fresh():  # always once: the stage, the elapsed time and the Cancel button
            await self._progress(self.pace.running())

    async def stage(self, stage: Stage) -> None:
        text = self.pace.stage(stage)
        if stage is not Stage.SENDING and self.token_fresh() and self.pace.fresh(text, self.pace.queue_interval):
            await self._progress(text)

    async def partial(self, preview: Preview) -> None:
        limit = self.interaction.filesize_limit
        if len(preview.image) > limit or not self.token_fresh() or not self.pace.preview_due():
            return
        await self._progress(self.pace.preview(), attachments=[preview_file(preview)])

    async def _progress(self, text: str, **fields: Any) -> None:
        """Edit the progress (the original response), with the Cancel button while the round runs."""
        self.pace.shows(text)
        if self.info is not None:
            fields["view"] = buttons_view((self.info.cancel,))
        try:
            message = await self.interaction.edit_original_response(content=text, **fields)
            self._progress_id = str(message.id)
        except discord.HTTPException:
            log.warning("progress edit failed for interaction %s", self.interaction.id, exc_info=True)

    async def deliver(self, result: RoundResult) -> list[str]:
        """Raises on failure: the core then refunds."""
        await self._stop_waiting()
        upload = await result_upload(result, self.interaction.filesize_limit)
        content = plain(result.caption)
        message: discord.Message | None = None
        if self.token_fresh():
            try:
                message = await self.interaction.edit_original_response(
                    content=content, attachments=[upload.file()], view=buttons_view(result.buttons)
                )
            except discord.HTTPException as exc:
                if exc.code not in GONE_CODES:
                    raise
                log.warning(
                    "interaction %s response is gone (code %s): posting to the channel", self.interaction.id, exc.code
                )
        if message is None:
            message = await self._channel().send(content=content, file=upload.file(), view=buttons_view(result.buttons))
            await self._forget_original()
        self.finished = True
        return [str(message.id)]

    async def refuse(self, refusal: Refusal) -> None:
        self.finished = True
        await self._stop_waiting()
        await self.say(refusal.text, ephemeral=refusal.ephemeral)

    async def say(self, text: str, *, ephemeral: bool, followup: bool = False) -> None:
        """Answer with text. When the visibility differs from the defer's, drop the "thinking" message first:
        a followup would otherwise replace it and keep its visibility. `followup`: a further, private message
        (never posted to the channel)."""
        try:
            if followup:
                if self.token_fresh():
                    await self.interaction.followup.send(plain(text), ephemeral=True)
            elif not self.token_fresh():
                mention = self.interaction.user.mention  # no ping: mentions are off client-wide
                await self._channel().send(content=plain(f"{mention} {text}"))
                await self._forget_original()
            elif ephemeral != self.deferred_ephemeral:
                await self._forget_original()
                await self.interaction.followup.send(plain(text), ephemeral=ephemeral)
            else:
                await self.interaction.edit_original_response(content=plain(text), attachments=[], view=None)
        except discord.NotFound:
            log.warning("could not answer interaction %s: its message is gone", self.interaction.id)
        except discord.HTTPException:
            log.exception("could not answer interaction %s", self.interaction.id)

    async def abandon(self) -> None:
        """Nothing to show (a duplicate the core ignored): remove the "thinking" message."""
        await self._stop_waiting()
        await self._forget_original()

    async def _forget_original(self) -> None:
        """Delete the original response, best effort (never raises: the result may already be out)."""
        if discord.utils.utcnow() - self.interaction.created_at >= timedelta(minutes=15):
            return
        try:
            await self.interaction.delete_original_response()
        except discord.NotFound:
            pass
        except Exception:
            log.warning("could not delete the original response of interaction %s", self.interaction.id, exc_info=True)

    def _channel(self) -> discord.abc.Messageable:
        channel = self.interaction.channel
        if isinstance(channel, discord.abc.Messageable):
            return channel
        assert self.interaction.channel_id is not None
        return self.interaction.client.get_partial_messageable(
            self.interaction.channel_id, guild_id=self.interaction.guild_id
        )

    async def _quietly(self, call: Any) -> None:
        try:
            await call
        except discord.HTTPException:
            log.warning("progress edit failed for interaction %s", self.interaction.id, exc_info=True)


class MessageRoundView(ProgressDefaults):
    """A round asked for by a chat message: answers are replies to it (no ping). Progress goes into one
    status message that the result then replaces."""

    def __init__(
        self, message: discord.Message, *, edit_interval: float = EDIT_INTERVAL, lang: str = texts.DEFAULT_LANGUAGE
    ) -> None:
        self.message = message
        self.finished = False
        self.status: discord.Message | None = None
        self.pace = Progress(edit_interval, QUEUE_INTERVAL)
        self.pace.lang = lang  # a message carries no locale: the operator's default until `begin`

    def language(self) -> str:
        """The round's language once the core named it, else the default."""
        return self.pace.lang

    def progress_message(self) -> str | None:
        return str(self.status.id) if self.status is not None else None

    @property
    def limit(self) -> int:
        return self.message.guild.filesize_limit if self.message.guild else DEFAULT_UPLOAD_LIMIT

    async def begin(self, info: RoundInfo) -> None:
        self.info, self.pace.lang = info, info.lang  # shown with the first status (no request of its own)

    async def queued(self, position: int) -> None:
        """The first position at once (it makes the status message); later ones when they move meaningfully,
        every 10 s at most."""
        if not self.pace.shown or self.pace.move_due(position):
            self.pace.position = position
            await self._show(self.pace.queued(position))

    async def started(self) -> None:
        await self._show(self.pace.running())  # always once: the stage, elapsed time and Cancel button

    async def stage(self, stage: Stage) -> None:
        text = self.pace.stage(stage)
        if stage is not Stage.SENDING and self.pace.fresh(text, self.pace.queue_interval):
            await self._show(text)

    async def partial(self, preview: Preview) -> None:
        if len(preview.image) <= self.limit and self.pace.preview_due():
            await self._show(self.pace.preview(), attachments=[preview_file(preview)])

    async def deliver(self, result: RoundResult) -> list[str]:
        upload = await result_upload(result, self.limit)
        content = plain(result.caption)
        sent: discord.Message | None = None
        if self.status is not None:
            try:
                sent = await self.status.edit(
                    content=content, attachments=[upload.file()], view=buttons_view(result.buttons)
                )
            except discord.NotFound:  # someone deleted the progress message: answer afresh
                sent = None
        if sent is None:
            sent = await self._reply(content=content, file=upload.file(), view=buttons_view(result.buttons))
        self.finished = True
        return [str(sent.id)]

    async def refuse(self, refusal: Refusal) -> None:
        self.finished = True
        try:
            if self.status is not None:
                try:
                    await self.status.edit(content=plain(refusal.text), attachments=[], view=None)
                    return
                except discord.NotFound:
                    pass
            await self._reply(content=plain(refusal.text))
        except discord.HTTPException:
            log.exception("could not answer message %s", self.message.id)

    async def _show(self, text: str, **fields: Any) -> None:
        self.pace.shows(text)
        fields["content"] = text
        if self.info is not None:  # the Cancel button while the round runs
            fields["view"] = buttons_view((self.info.cancel,))
        try:
            if self.status is None:
                files = fields.pop("attachments", None)
                self.status = await self._reply(files=files or [], **fields)
            else:
                self.status = await self.status.edit(**fields)
        except discord.HTTPException:
            log.warning("progress message failed for message %s", self.message.id, exc_info=True)

    async def _reply(self, **fields: Any) -> discord.Message:
        reference = self.message.to_reference(fail_if_not_exists=False)
        return await self.message.channel.send(reference=reference, **fields)


async def result_upload(result: RoundResult, limit: int) -> Upload:
    """The result as a file. A transparent image goes as the PNG bytes it is (re-encoding could drop alpha);
    Discord refuses it if too large, and the core then refunds."""
    if result.transparent:
        return Upload(result.image, f"easel-{result.number}.png")
    return await fitted_image(result.image, result.mime, limit, f"easel-{result.number}")


async def guarded(view: InteractionRoundView | MessageRoundView, work: Awaitable[None], what: str) -> None:
    """Await a round's core call. The core answers through the view; the shared safety net catches what
    escapes it (an answer the view already gave is not replaced)."""

    async def refuse(refusal: Refusal) -> None:
        if not view.finished:
            await view.refuse(refusal)

    await answered(work, lang=view.language(), refuse=refuse, what=what)
