"""How one round looks in a Telegram chat (the core's RoundView).

Few platform calls per round (issue 16): a round that did not wait and had no previews costs a chat action
and a photo; one that waited, a message, a chat action, one edit and the result.

- Immediate feedback: a waiting round gets one message at once (with Cancel), edited only when its position
  moves meaningfully (`meaningful_move`) and at most every 10 s; no chat action while queued. Once the image
  is being made, the "sending a photo…" chat action, refreshed every 4 s (T-m), and the waiting message
  says so (one edit).
- Partial previews edit one preview message (the waiting message, else a new photo), paced by `EditPacer`:
  one edit per message per few seconds, and in groups one per chat (20 messages/min per group, T-b).
- The result: the waiting or preview message becomes the photo (editMessageMedia with the core's caption and
  buttons, so Cancel goes) instead of a new photo plus a deletion; otherwise a new photo replying to the
  user's message. Output over Telegram's photo limits (10 MB, width + height <= 10000, T-e) is re-encoded
  and sent, or sent as a document if that fails; a transparent result is a document (then the waiting
  message is deleted).
- Refusals are plain text in the chat, replacing the placeholder when there is one.
- Honest progress (issue 12): once a round has gone TICKER_AFTER seconds without a preview, an elapsed-time
  ticker shows its stage and the time since the request ("Thinking… 1:20", in the round's language) on the
  progress message (sending one, with Cancel, if the round had none), at most every TICK_MIN seconds per
  message (less often as the round ages), and in groups at most one ticker edit per GROUP_TICK_SPACING across
  the chat. A quick round never sees it (the call counts above hold); it stops at the first preview and at the
  end of the round, skips ticks while the chat is under a flood hold, and never delays the round.
- Flood control (429) holds the whole chat (`bots.telegram.send.FloodGate`, shared through the pacer): results,
  refusals and deletions wait for the hold; chat actions, previews and placeholder edits are skipped meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.constants import ChatAction
from telegram.error import NetworkError, RetryAfter, TelegramError

from bots.telegram.pacing import EditPacer
from bots.telegram.send import CAPTION_LIMIT, clip, reply_to, retry_after_seconds, send_text
from core import texts
from core.outcomes import Button, Preview, ProgressDefaults, Refusal, RoundInfo, RoundResult, Stage
from core.provider import pictures

log = logging.getLogger(__name__)

PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDE_SUM = 10_000
ACTION_REFRESH = 4.0  # a chat action shows for at most 5 s
ACTION_CLOSE_GRACE = 2.0  # how long close() lets a chat action being sent finish (cut, it is a broken request)
QUEUE_EDIT_INTERVAL = 10.0  # a waiting message is edited at most this often (issue 16: few calls per round)
TICKER_AFTER = 15.0  # the elapsed-time ticker starts once a round has gone this long (since the request) unseen
TICK_MIN = QUEUE_EDIT_INTERVAL  # a progress message is never edited more often than this
TICK_MAX = 30.0  # an unchanged stage is re-ticked every elapsed/10 s, between TICK_MIN and TICK_MAX
GROUP_TICK_SPACING = 6.0  # one ticker edit per group per this: <= 10 a minute, half of Telegram's 20 (T-b)
TICK_POLL = 1.0  # the ticker looks at the clock at least this often (a new stage shows at the next allowed edit)
TICKER_LIFETIME = 3600.0  # a ticker whose round never ended on this view (a shutdown) stops by itself
CALLBACK_PREFIX = "e:"
CALLBACK_DATA_LIMIT = 64  # bytes
REROLL_PREFIX = CALLBACK_PREFIX + "reroll:"

Fit = Callable[..., tuple[bytes, str, str]]


def queued_text(lang: str, position: int) -> str:
    """The waiting message for a 1-based place in the provider queue, in `lang`."""
    ahead = position - 1
    if ahead <= 0:
        return texts.say(lang, "progress.next")
    return texts.say(lang, "tg.progress.ahead", count=ahead)


def keyboard(buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
    rows: list[list[InlineKeyboardButton]] = []
    for button in buttons:
        data = CALLBACK_PREFIX + button.action
        if len(data.encode()) > CALLBACK_DATA_LIMIT:
            log.error("button action %r does not fit Telegram's 64-byte callback data; left out", button.action)
            continue
        if not rows or len(rows[-1]) == 3:
            rows.append([])
        rows[-1].append(InlineKeyboardButton(clip(button.label, 64), callback_data=data))
    return InlineKeyboardMarkup(rows) if rows else None


def elapsed_text(seconds: float) -> str:
    """Elapsed time as the catalog's `{elapsed}` wants it: m:ss (1:05), plain digits in every language."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def meaningful_move(shown: int, now: int) -> bool:
    """Is a new queue position worth an edit? Forward moves only: into the last three places, or by a
    quarter of the shown position (at least 2 places)."""
    return now < shown and (now <= 3 or shown - now >= max(2, shown // 4))


def shown_round(message: Message) -> int | None:
    """The round id an Easel result names in its Reroll button (`e:reroll:<id>`), if it has one."""
    markup = message.reply_markup
    if markup is None:
        return None
    for row in markup.inline_keyboard:
        for button in row:
            data = button.callback_data
            if isinstance(data, str) and data.startswith(REROLL_PREFIX) and data[len(REROLL_PREFIX):].isdigit():
                return int(data[len(REROLL_PREFIX):])
    return None


@dataclass(frozen=True, slots=True)
class Where:
    """Where a round is shown: the chat, its forum topic, and the message the result replies to."""

    chat_id: int
    thread_id: int | None
    reply_to_id: int | None
    group: bool


class TelegramRoundView(ProgressDefaults):
    def __init__(
        self, bot: Bot, where: Where, pacer: EditPacer, fit: Fit = pictures.fit_for_upload,
        lang: str = texts.DEFAULT_LANGUAGE,
    ) -> None:
        self.bot = bot
        self.lang = lang  # the asker's language until the core names the round's (RoundInfo.lang)
        self.where = where
        self.pacer = pacer
        self.gate = pacer.gate
        self.fit = fit
        self._placeholder: Message | None = None  # text while queued; becomes the preview, then the result
        self._shown_position: int | None = None  # the queue position the waiting message shows
        self._edited_at = -math.inf  # when the waiting message was last sent or edited (pacer clock)
        self._action: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        # Honest progress: what the round is doing, and the ticker that shows it with the elapsed time.
        self._since = pacer.clock()  # the view is made when the request arrives
        self._position: int | None = None  # the latest queue position, while queued
        self._stage: Stage | None = None
        self._preview_shown = False
        self._ticked: tuple[Stage | None, int | None] | None = None  # (stage, position) the ticker last showed
        self._said: str | None = None  # the ticker's last text
        self._ticker: asyncio.Task[None] | None = None
        self._tick_busy = False  # a ticker call is on the wire
        self._lock = asyncio.Lock()  # one progress call at a time (the ticker and the core's progress calls)

    # -- RoundView -----------------------------------------------------------------------------------------

    async def begin(self, info: RoundInfo) -> None:
        self.info = info
        if self._ticker is None and not self._done.is_set():
            self._ticker = asyncio.create_task(self._tick_loop(), name="telegram-progress-ticker")

    async def stage(self, stage: Stage) -> None:
        """Noted for the ticker, never an edit of its own: a quick round does not pay for its stages."""
        self._stage = stage
        if stage is not Stage.QUEUED:
            self._position = None

    def progress_message(self) -> str | None:
        return str(self._placeholder.message_id) if self._placeholder is not None else None

    def _cancel_markup(self) -> InlineKeyboardMarkup | None:
        """The Cancel button, on the progress message while the round is queued or running."""
        return keyboard((self.info.cancel,)) if self.info is not None and not self._done.is_set() else None

    async def queued(self, position: int) -> None:
        """One message while the round waits (with Cancel), edited only when the position changes meaningfully
        and at most every QUEUE_EDIT_INTERVAL seconds. No chat action while queued: nothing is being made."""
        if self._done.is_set():
            return
        self._position, self._stage = position, Stage.QUEUED
        async with self._lock:
            await self._show_queued(position)

    async def _show_queued(self, position: int) -> None:
        if self._done.is_set() or self._ticked is not None:
            return  # once the ticker shows the round, it shows the position too
        if self._placeholder is None:
            self._placeholder = await send_text(
                self.bot, self.gate, self.where.chat_id, queued_text(self.language(), position),
                reply_to_id=self.where.reply_to_id, thread_id=self.where.thread_id, reply_markup=self._cancel_markup(),
            )
            self._shown_position, self._edited_at = position, self.pacer.clock()
            return
        shown = self._shown_position
        if shown is None or not self._placeholder.text or not meaningful_move(shown, position):
            return
        if self.pacer.clock() - self._edited_at < QUEUE_EDIT_INTERVAL:
            return
        self._shown_position, self._edited_at = position, self.pacer.clock()
        await self._edit_text(queued_text(self.language(), position))

    async def started(self) -> None:
        """The image is being made: the chat action starts now; a waiting message says so (one edit)."""
        self._position, self._stage = None, Stage.THINKING
        self._start_action()
        async with self._lock:
            if self._ticked is not None or self._done.is_set():
                return  # the ticker already shows the round: "Thinking…" at its next allowed edit
            if self._placeholder is not None and self._placeholder.text and self._shown_position is not None:
                self._shown_position, self._edited_at = None, self.pacer.clock()
                await self._edit_text(texts.say(self.language(), "progress.working"))

    async def partial(self, preview: Preview) -> None:
        async with self._lock:
            await self._show_preview(preview)

    async def _show_preview(self, preview: Preview) -> None:
        if self._done.is_set() or not self._pace():
            return
        where = self.where
        try:
            caption = texts.say(self.language(), "progress.preview")
            if self._placeholder is None:
                self._placeholder = await self.bot.send_photo(
                    where.chat_id,
                    preview.image,
                    caption=caption,
                    reply_markup=self._cancel_markup(),
                    reply_parameters=reply_to(where.reply_to_id),
                    message_thread_id=where.thread_id,
                    filename="preview.png",
                )
            else:
                edited = await self.bot.edit_message_media(
                    InputMediaPhoto(preview.image, caption=caption, filename="preview.png"),
                    chat_id=where.chat_id,
                    message_id=self._placeholder.message_id,
                    reply_markup=self._cancel_markup(),
                )
                if isinstance(edited, Message):
                    self._placeholder = edited
            self._preview_shown = True  # the preview is the progress now: the ticker stops
        except RetryAfter as error:  # previews are optional: skip, and keep the chat quiet for a while
            self.pacer.hold(where.chat_id, retry_after_seconds(error))
        except TelegramError as error:
            log.info("preview not shown (%s)", type(error).__name__)

    async def deliver(self, result: RoundResult) -> list[str]:
        # No new chat actions, but the upload does not wait for one already on the wire (under load that
        # wait was most of the time between the provider's answer and the upload).
        self._done.set()
        await self._stop_ticker()  # a tick on the wire lands first, so the result goes into its message
        try:
            message = await self._into_placeholder(result) if self._placeholder is not None else None
            if message is None:
                message = await self._send_result(result)
                await self._drop_placeholder()
            elif result.send_file:
                await self._send_original(result, message)
        finally:
            await self.close()
        return [str(message.message_id)]

    async def _into_placeholder(self, result: RoundResult) -> Message | None:
        """The waiting or preview message becomes the result (editMessageMedia: the photo, its caption and
        buttons; Cancel goes), instead of a new photo plus a deletion. None when that cannot be done here
        (a document, an image over the photo limits, a message the user deleted): then the result is sent."""
        placeholder = self._placeholder
        if placeholder is None or result.transparent:
            return None
        if len(result.image) > PHOTO_MAX_BYTES or result.width + result.height > PHOTO_MAX_SIDE_SUM:
            return None
        ext = pictures.extension_for(result.mime)
        media = InputMediaPhoto(result.image, caption=clip(result.caption, CAPTION_LIMIT),
                                filename=f"easel-{result.number}.{ext}")
        try:
            edited = await self.gate.send(
                self.where.chat_id,
                lambda: self.bot.edit_message_media(
                    media, chat_id=self.where.chat_id, message_id=placeholder.message_id,
                    reply_markup=keyboard(result.buttons),
                ),
                "editMessageMedia",
            )
        except RetryAfter:
            raise
        except TelegramError as error:
            log.info("round %d: progress message not turned into the result (%s); sending it", result.round_id,
                     type(error).__name__)
            return None
        self._placeholder = None
        return edited if isinstance(edited, Message) else placeholder

    async def refuse(self, refusal: Refusal) -> None:
        await self.close()
        if self._placeholder is not None and self._placeholder.text:
            with contextlib.suppress(TelegramError):
                await self.gate.send(
                    self.where.chat_id,
                    lambda: self.bot.edit_message_text(
                        clip(refusal.text, 4096), chat_id=self.where.chat_id, message_id=self._placeholder_id()
                    ),
                    "editMessageText",
                )
                return
        await self._drop_placeholder()
        await send_text(
            self.bot, self.gate, self.where.chat_id, refusal.text, reply_to_id=self.where.reply_to_id,
            thread_id=self.where.thread_id,
        )

    async def close(self) -> None:
        """Stop the chat action; the adapter calls this when the round ends, however it ends. A chat action
        being sent is let finish (briefly): cutting a request mid-body breaks the connection under it.
        The ticker stops too."""
        self._done.set()
        await self._stop_ticker()
        task, self._action = self._action, None
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=ACTION_CLOSE_GRACE)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- the elapsed-time ticker ----------------------------------------------------------------------------

    def _showing(self) -> tuple[Stage | None, int | None]:
        return (self._stage, self._position)

    def _next_tick(self) -> float:
        """When the ticker may next show the round: TICKER_AFTER after the request, then TICK_MIN after the
        last edit of the message when there is news (a stage or position), else every elapsed/10 s."""
        first = self._since + TICKER_AFTER
        if self._ticked is None or self._ticked != self._showing():
            return max(first, self._edited_at + TICK_MIN)
        age = self._edited_at - self._since
        return max(first, self._edited_at + min(TICK_MAX, max(TICK_MIN, age / 10)))

    async def _tick_loop(self) -> None:
        clock, sleep = self.pacer.clock, self.pacer.sleep
        while not self._done.is_set() and not self._preview_shown and clock() - self._since < TICKER_LIFETIME:
            wait = self._next_tick() - clock()
            if wait > 0:  # one timer until the first tick (a quick round costs nothing more), then polls
                await sleep(wait if self._ticked is None else min(wait, TICK_POLL))
            elif not await self._tick():
                await sleep(TICK_POLL)  # held or paced: look again shortly

    async def _tick(self) -> bool:
        """Show the stage and the elapsed time now, if the chat allows it. False when it had to skip (a flood
        hold on the chat, or the group's pace)."""
        where = self.where
        async with self._lock:
            if self._done.is_set() or self._preview_shown:
                return True
            if self._placeholder is not None and not self._placeholder.text:
                return True  # a photo (a preview) shows the round already
            if self.gate.remaining(where.chat_id) > 0:
                return False  # under flood control: skip ticks until the hold ends
            now = self.pacer.clock()
            showing, text = self._showing(), self._tick_text(now - self._since)
            if text == self._said:  # nothing new to say ("Sending…"): not an edit
                self._ticked, self._edited_at = showing, now
                return True
            if not self._may_tick():
                return False
            self._ticked, self._said, self._edited_at = showing, text, now
            self._tick_busy = True
            try:
                if self._placeholder is None:  # a round that did not wait gets its progress message now
                    self._placeholder = await self.bot.send_message(
                        where.chat_id, text, reply_parameters=reply_to(where.reply_to_id),
                        message_thread_id=where.thread_id, reply_markup=self._cancel_markup(),
                    )
                else:
                    await self._edit_text(text)
            except RetryAfter as error:
                self.pacer.hold(where.chat_id, retry_after_seconds(error))
            except TelegramError as error:
                log.info("progress not shown (%s)", type(error).__name__)
            finally:
                self._tick_busy = False
            return True

    def _may_tick(self) -> bool:
        """The chat's pace allows a tick now. In a group, a round not shown yet goes before re-ticks of rounds
        already shown, so nobody in the group is left without a progress message."""
        where, pacer = self.where, self.pacer
        first = self._placeholder is None
        if where.group:
            pacer.first_waiting(where.chat_id, id(self), first)
            if not first and pacer.others_unshown(where.chat_id, id(self)):
                return False
        chat_pace = GROUP_TICK_SPACING if where.group else None
        if not pacer.ready(where.chat_id, id(self), where.group, chat_interval=chat_pace):
            return False
        if where.group and first:
            pacer.first_waiting(where.chat_id, id(self), False)
        return True

    def _tick_text(self, elapsed: float) -> str:
        lang, clock = self.language(), elapsed_text(elapsed)
        if self._position is not None:
            ahead = self._position - 1
            if ahead <= 0:
                return texts.say(lang, "progress.next_for", elapsed=clock)
            return texts.say(lang, "progress.queued_for", count=ahead, elapsed=clock)
        if self._stage is Stage.SENDING:
            return texts.say(lang, "progress.sending")
        if self._stage is Stage.DRAWING:
            return texts.say(lang, "progress.drawing", elapsed=clock)
        return texts.say(lang, "progress.thinking", elapsed=clock)

    async def _stop_ticker(self) -> None:
        """Stop the ticker (the round has ended). A tick on the wire is let finish, briefly, so that its
        message is known and nothing edits the progress message after the result."""
        task, self._ticker = self._ticker, None
        if self.where.group:
            self.pacer.first_waiting(self.where.chat_id, id(self), False)  # ended: no longer waits to be shown
        if task is None or task.done() or task is asyncio.current_task():
            return
        if self._tick_busy:
            await asyncio.wait({task}, timeout=ACTION_CLOSE_GRACE)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})

    # -- helpers -------------------------------------------------------------------------------------------

    def _pace(self) -> bool:
        return self.pacer.ready(self.where.chat_id, id(self), self.where.group)

    def _placeholder_id(self) -> int:
        assert self._placeholder is not None
        return self._placeholder.message_id

    async def _edit_text(self, text: str) -> None:
        if self.gate.remaining(self.where.chat_id) > 0:
            return  # progress text is optional: not while the chat is under flood control
        try:
            edited = await self.bot.edit_message_text(
                text, chat_id=self.where.chat_id, message_id=self._placeholder_id(), reply_markup=self._cancel_markup()
            )
        except RetryAfter as error:
            self.pacer.hold(self.where.chat_id, retry_after_seconds(error))
            return
        except TelegramError as error:
            log.info("placeholder not updated (%s)", type(error).__name__)
            return
        if isinstance(edited, Message):
            self._placeholder = edited

    def _start_action(self) -> None:
        if self._action is None and not self._done.is_set():
            self._action = asyncio.create_task(self._action_loop(), name="telegram-chat-action")

    async def _action_loop(self) -> None:
        while not self._done.is_set():
            held = self.gate.remaining(self.where.chat_id)
            if held > 0:  # under flood control: no chat action until the hold ends
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done.wait(), held)
                continue
            try:
                await self.bot.send_chat_action(
                    self.where.chat_id, ChatAction.UPLOAD_PHOTO, message_thread_id=self.where.thread_id
                )
                wait = ACTION_REFRESH
            except RetryAfter as error:
                self.gate.hold(self.where.chat_id, retry_after_seconds(error))
                wait = ACTION_REFRESH
            except TelegramError as error:
                log.info("chat action not sent (%s)", type(error).__name__)
                wait = ACTION_REFRESH
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), wait)

    async def _drop_placeholder(self) -> None:
        placeholder, self._placeholder = self._placeholder, None
        if placeholder is not None:
            with contextlib.suppress(TelegramError):
                await self.gate.send(
                    self.where.chat_id,
                    lambda: self.bot.delete_message(self.where.chat_id, placeholder.message_id),
                    "deleteMessage",
                )

    async def _send_result(self, result: RoundResult) -> Message:
        if result.transparent:  # a photo would be re-encoded to JPEG and lose the alpha: the file as it is
            return await self._send_document(result, result.image, pictures.extension_for(result.mime))
        message = await self._send_photo_fitted(result)
        if result.send_file:  # `--file`: the original PNG too, never re-encoded
            await self._send_original(result, message)
        return message

    async def _send_original(self, result: RoundResult, message: Message) -> None:
        with contextlib.suppress(TelegramError):
            await self.gate.send(
                self.where.chat_id,
                lambda: self.bot.send_document(
                    self.where.chat_id, result.image,
                    caption=clip(texts.say(self.language(), "tg.file.caption", number=result.number), CAPTION_LIMIT),
                    reply_parameters=reply_to(message.message_id), message_thread_id=self.where.thread_id,
                    filename=f"easel-{result.number}.{pictures.extension_for(result.mime)}",
                    disable_content_type_detection=True,
                ),
                "sendDocument",
            )

    def language(self) -> str:
        """The language this round is shown in: the round's once the core names it, else the asker's."""
        return self.info.lang if self.info is not None else self.lang

    async def _send_photo_fitted(self, result: RoundResult) -> Message:
        data, mime, ext = result.image, result.mime, pictures.extension_for(result.mime)
        if len(data) > PHOTO_MAX_BYTES or result.width + result.height > PHOTO_MAX_SIDE_SUM:
            try:
                data, mime, ext = await asyncio.to_thread(
                    self.fit, data, mime, max_bytes=PHOTO_MAX_BYTES, max_side_sum=PHOTO_MAX_SIDE_SUM
                )
            except Exception:
                log.warning("round %d: could not fit the image to Telegram's photo limits; sending a document",
                            result.round_id, exc_info=True)
                return await self._send_document(result, result.image, ext)
        try:
            return await self._send_photo(result, data, ext)
        except NetworkError as error:  # BadRequest is a NetworkError too
            text = str(error).lower()
            if "photo_invalid_dimensions" in text or "too large" in text or "too big" in text:
                log.warning("round %d: Telegram refused the photo (%s); sending a document", result.round_id, error)
                return await self._send_document(result, result.image, pictures.extension_for(result.mime))
            raise

    async def _send_photo(self, result: RoundResult, data: bytes, ext: str) -> Message:
        return await self._send_file(result, data, ext, document=False)

    async def _send_document(self, result: RoundResult, data: bytes, ext: str) -> Message:
        return await self._send_file(result, data, ext, document=True)

    async def _send_file(self, result: RoundResult, data: bytes, ext: str, *, document: bool) -> Message:
        where = self.where
        send = self.bot.send_document if document else self.bot.send_photo
        return await self.gate.send(
            where.chat_id,
            lambda: send(
                where.chat_id,
                data,
                caption=clip(result.caption, CAPTION_LIMIT),
                reply_markup=keyboard(result.buttons),
                reply_parameters=reply_to(where.reply_to_id),
                message_thread_id=where.thread_id,
                filename=f"easel-{result.number}.{ext}",
            ),
            "sendDocument" if document else "sendPhoto",
        )

