"""Telegram updates -> core calls -> chat messages. Each handler parses, calls the studio, renders.

What starts a round:
- `/imagine <prompt>` (also `/imagine@botname`) anywhere; in a private chat, any plain text.
- `/imagine <instruction>` replying to one of Easel's images: an edit round from that image (the core
  resolves the parent from the replied-to message id). Replying to any other photo or image document, or
  sending a photo with the caption `/imagine <instruction>` (in a private chat any caption): edits that photo.
- A plain text reply to one of Easel's images (groups and private chats; with privacy mode on, Telegram still
  delivers replies to the bot's messages): an edit round.
- A button under a result: `Studio.press`.

Policy on edited messages: they never start rounds or commands. Editing a prompt after sending it would
otherwise charge twice or race the running round; the user sends a new message (or replies to the image)
instead. Edits are not even requested (`allowed_updates`), and every handler accepts new messages only.

Handlers only parse and spawn: the work (which can take minutes) runs in tasks, so PTB's update loop never
waits on a generation. Redelivered updates reach the core with the same idempotency key and do nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram import Bot, Chat, Message, MessageEntity, Update, User
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots.process.config import Settings
from bots.telegram.albums import ALBUM_WINDOW, AlbumCollector, album_key, window_wait
from bots.telegram.args import NEED_TARGET, NEEDS_TARGET, UsageError, parse_quota
from bots.telegram.common import (
    TELEGRAM,
    actor_for,
    channel_key,
    from_human,
    has_image,
    idempotency_key,
    input_image,
    is_anonymous_admin,
    is_group,
    mentioned,
    message_key,
    replied,
    reply_target,
    thread_of,
    user_actor,
)
from bots.telegram.mods import ModeratorCheck
from bots.telegram.pacing import EditPacer
from bots.telegram.send import retrying, send_text
from bots.telegram.view import CALLBACK_PREFIX, TelegramRoundView, Where, shown_round
from core.errors import NotModerator, UserFacingError
from core.events import Actor, ChannelKey, DeskCommand, InputImage, RoundRequest, UserRef, Verb
from core.flags import parse_flags
from core.outcomes import Refusal
from core.ports import Services
from core.safety import answered
from core.texts import pick_language, say

log = logging.getLogger(__name__)

Spawn = Callable[[Update, Coroutine[Any, Any, None]], None]
Context = ContextTypes.DEFAULT_TYPE
Parent = tuple[int | None, str] | None  # (round id from the message's button, message id)


class TelegramHandlers:
    def __init__(
        self,
        settings: Settings,
        services: Services,
        bot: Bot,
        spawn: Spawn,
        report: Callable[[Update, Exception], Awaitable[None]],
        pacer: EditPacer,
        mods: ModeratorCheck,
        download_cap: int | None,
        albums: AlbumCollector | None = None,
    ) -> None:
        self.albums = albums if albums is not None else AlbumCollector(window_wait(ALBUM_WINDOW))
        self.settings = settings
        self._turned_away: set[int] = set()  # groups told "private" (once), being left
        self.services = services
        self.bot = bot
        self.spawn = spawn
        self.report = report
        self.pacer = pacer
        self.mods = mods
        self.download_cap = download_cap

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        new = filters.UpdateType.MESSAGE  # never edited messages (see the module docstring)
        # EASEL_COMMUNITIES first: in a group Easel does not serve, nothing else runs.
        app.add_handler(MessageHandler(new & filters.ChatType.GROUPS, self.on_group_message), group=-1)
        app.add_handler(ChatMemberHandler(self.on_my_membership, ChatMemberHandler.MY_CHAT_MEMBER), group=-1)
        app.add_handler(CommandHandler("imagine", self.on_imagine, filters=new))
        app.add_handler(CommandHandler("quota", self.on_quota, filters=new))
        app.add_handler(CommandHandler("usage", self.on_usage, filters=new))
        app.add_handler(CommandHandler(["help", "start"], self.on_help, filters=new))
        app.add_handler(CommandHandler("cancel", self.on_cancel, filters=new))
        app.add_handler(CommandHandler("language", self.on_language, filters=new))
        app.add_handler(MessageHandler(new & filters.StatusUpdate.MIGRATE, self.on_migrate))
        app.add_handler(MessageHandler(new & (filters.PHOTO | filters.Document.IMAGE), self.on_photo))
        app.add_handler(MessageHandler(new & filters.TEXT & ~filters.COMMAND, self.on_text))
        app.add_handler(CallbackQueryHandler(self.on_button, pattern=f"^{CALLBACK_PREFIX}"))
        # A private chat is never silent: what nothing above took gets a one-line hint.
        private = new & filters.ChatType.PRIVATE
        app.add_handler(MessageHandler(private & filters.COMMAND, self.on_private_hint))
        app.add_handler(MessageHandler(private & (filters.Sticker.ALL | filters.ANIMATION), self.on_private_hint))
        app.add_handler(MessageHandler(private & filters.ATTACHMENT, self.on_private_hint))

    # -- EASEL_COMMUNITIES --------------------------------------------------------------------------------

    def _serves(self, chat: Chat, user: User | None) -> bool:
        """Easel works in this group (EASEL_COMMUNITIES unset, or it lists the group), or an operator asks."""
        if self.settings.serves(TELEGRAM, str(chat.id)):
            return True
        return user is not None and self.settings.is_operator(TELEGRAM, str(user.id))

    async def on_group_message(self, update: Update, context: Context) -> None:
        """In a group Easel does not serve, say once that the bot is private, and leave."""
        message = update.message
        if message is None or self._serves(message.chat, message.from_user):
            return
        if from_human(message, self.bot.id) and message.chat.id not in self._turned_away:
            self._turned_away.add(message.chat.id)
            self.spawn(update, self._leave(message.chat.id, message.from_user, thread_of(message)))
        raise ApplicationHandlerStop

    async def on_my_membership(self, update: Update, context: Context) -> None:
        """Easel was added to a group: if it does not serve that group (and no operator added it), leave."""
        change = update.my_chat_member
        if change is None or not is_group(change.chat):
            return
        if change.new_chat_member.status not in (ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR):
            return
        if self._serves(change.chat, change.from_user):
            return
        self._turned_away.add(change.chat.id)
        self.spawn(update, self._leave(change.chat.id, change.from_user, None))
        raise ApplicationHandlerStop

    async def _leave(self, chat_id: int, user: User | None, thread: int | None) -> None:
        lang = pick_language(user.language_code if user else None, None, self.settings.language)
        try:
            await send_text(self.bot, self.pacer.gate, chat_id, say(lang, "service.private"), thread_id=thread)
        except TelegramError as error:
            log.info("could not say goodbye in a group Easel does not serve (%s)", type(error).__name__)
        try:
            await retrying(lambda: self.bot.leave_chat(chat_id), "leaveChat")
        except TelegramError as error:
            log.warning("could not leave a group Easel does not serve (%s)", type(error).__name__)
        else:
            log.info("left Telegram chat %s: not in EASEL_COMMUNITIES", chat_id)

    # -- update handlers: filter, then spawn ---------------------------------------------------------------

    def _human(self, update: Update) -> Message | None:
        message = update.message
        return message if from_human(message, self.bot.id) else None

    async def on_imagine(self, update: Update, context: Context) -> None:
        if message := self._human(update):
            self.spawn(update, self._imagine(update, message, _after_command(message.text or "")))

    async def on_photo(self, update: Update, context: Context) -> None:
        message = self._human(update)
        if message is None:
            return
        caption = message.caption or ""
        if message.media_group_id is not None:
            self.spawn(update, self.albums.collect(message, lambda items: self._album(update, items)))
        elif self._is_imagine(message):
            self.spawn(update, self._imagine(update, message, _after_command(caption), source=message))
        elif message.chat.type == ChatType.PRIVATE and caption.strip() and not _has_command(message):
            self.spawn(update, self._imagine(update, message, caption, source=message))
        elif message.chat.type == ChatType.PRIVATE and not caption.strip():
            self.spawn(update, self._hint(message, "tg.private.photo_without_caption"))
        elif message.chat.type == ChatType.PRIVATE:
            await self.on_private_hint(update, context)  # another command's caption

    async def on_text(self, update: Update, context: Context) -> None:
        message = self._human(update)
        if message is None:
            return
        target = replied(message)
        if message.chat.type == ChatType.PRIVATE:
            self.spawn(update, self._imagine(update, message, message.text or ""))
        elif target is not None and target.from_user is not None and target.from_user.id == self.bot.id:
            self.spawn(update, self._reply_round(update, message, target))

    async def on_private_hint(self, update: Update, context: Context) -> None:
        """A private chat is never silent: an unknown command, a file that is not an image, a sticker."""
        message = self._human(update)
        if message is None:
            return
        if message.sticker is not None or message.animation is not None:
            self.spawn(update, self._hint(message, "tg.private.sticker"))
        elif (message.text or "").startswith("/") or _has_command(message):
            command = (message.text or message.caption or "").split(maxsplit=1)[0].split("@")[0]
            self.spawn(update, self._hint(message, "tg.private.unknown_command", command=command[:40]))
        else:
            self.spawn(update, self._hint(message, "tg.private.not_an_image"))

    async def _hint(self, message: Message, msg_id: str, **params: object) -> None:
        user = message.from_user
        lang = pick_language(user.language_code if user else None, None, self.settings.language)
        await self._reply(message, say(lang, msg_id, **params))

    async def on_quota(self, update: Update, context: Context) -> None:
        if message := self._human(update):
            self.spawn(update, self._answer(update, message, self._quota(update, message, command_args(message))))

    async def on_usage(self, update: Update, context: Context) -> None:
        if message := self._human(update):
            self.spawn(update, self._answer(update, message, self._usage(message)))

    async def on_help(self, update: Update, context: Context) -> None:
        if message := self._human(update):
            self.spawn(update, self._answer(update, message, self._help(message)))

    async def on_cancel(self, update: Update, context: Context) -> None:
        if message := self._human(update):
            self.spawn(update, self._answer(update, message, self._cancel(message)))

    async def on_language(self, update: Update, context: Context) -> None:
        if message := self._human(update):
            self.spawn(update, self._answer(update, message, self._language(update, message, command_args(message))))

    async def on_migrate(self, update: Update, context: Context) -> None:
        message = update.message
        if message is not None and message.migrate_to_chat_id:
            old, new = str(message.chat.id), str(message.migrate_to_chat_id)
            self.spawn(update, self.services.desk.migrate_community(TELEGRAM, old, new))

    async def on_button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is not None and query.data and not query.from_user.is_bot:
            self.spawn(update, self._press(update))

    # -- rounds --------------------------------------------------------------------------------------------

    async def _imagine(
        self, update: Update, message: Message, prompt: str, source: Message | None = None,
        references: tuple[InputImage, ...] = (), idem: str | None = None,
    ) -> None:
        """A prompt. `source` is the message whose photo to edit; otherwise the replied-to message decides:
        one of Easel's images (an edit round), any other photo (edit that photo), or nothing (generate).
        `references` are further images (an album); `idem` overrides the message's idempotency key."""
        key = message_key(message)
        actor = actor_for(message)
        try:
            flags = parse_flags(prompt)
        except UserFacingError as error:  # an unknown flag or value: refused before anything is spent
            await self._reply(message, error.text(self._lang(actor.locale)))
            return
        parent: Parent = None
        image = input_image(self.bot, source, self.download_cap) if source is not None else None
        target = replied(message)
        if source is None and target is not None:
            parent = await self._parent(key, target)
            if parent is None and has_image(target):
                image = input_image(self.bot, target, self.download_cap)
        request = RoundRequest(
            key, actor, flags.prompt, idem or idempotency_key(update, message),
            reply_to=parent[1] if parent else None, parent_round=parent[0] if parent else None,
            input_image=image, references=references, options=flags.options, send_file=flags.send_file,
        )
        await self._run(update, self.services.rounds.submit(request, view := self._view(message)), view)

    async def _album(self, update: Update, items: list[Message]) -> None:
        """A whole album (see bots.telegram.albums): one request with every image as a reference, the prompt
        from the item whose caption starts with /imagine (in a private chat, any caption). The core refuses
        more than it takes, at no cost."""
        captioned = next((m for m in items if self._is_imagine(m)), None)
        prompt = _after_command(captioned.caption or "") if captioned is not None else None
        private = items[0].chat.type == ChatType.PRIVATE
        if captioned is None and private:
            captioned = next((m for m in items if (m.caption or "").strip() and not _has_command(m)), None)
            prompt = captioned.caption if captioned is not None else None
        if captioned is None or prompt is None:
            if private:
                await self._hint(items[0], "tg.private.photo_without_caption")
            return
        images = tuple(i for m in items if (i := input_image(self.bot, m, self.download_cap)) is not None)
        chat, group = items[0].chat.id, items[0].media_group_id or ""
        await self._imagine(update, captioned, prompt, references=images, idem=album_key(chat, group))

    async def _reply_round(self, update: Update, message: Message, target: Message) -> None:
        """A text reply in a group to one of Easel's messages: an edit round if it shows a round."""
        key = message_key(message)
        parent = await self._parent(key, target)
        if parent is None:
            return  # a reply to a quota answer or a help text: not for us
        request = RoundRequest(
            key, actor_for(message), message.text or "", idempotency_key(update, message),
            reply_to=parent[1], parent_round=parent[0],
        )
        await self._run(update, self.services.rounds.submit(request, view := self._view(message)), view)

    async def _press(self, update: Update) -> None:
        query = update.callback_query
        assert query is not None and query.data is not None
        try:
            await retrying(query.answer, "answerCallbackQuery")  # stops the button's spinner at once
        except TelegramError as error:
            log.info("callback query not answered (%s)", type(error).__name__)
        message = query.message
        if message is None:
            return  # a button on an inline message: not one of ours
        thread = thread_of(message) if isinstance(message, Message) else None
        key = channel_key(message.chat, thread)
        actor = user_actor(query.from_user)
        await self.services.desk.seen(actor, key.community)
        where = Where(message.chat.id, thread, message.message_id, is_group(message.chat))
        view = TelegramRoundView(self.bot, where, self.pacer, lang=self._lang(actor.locale))
        action = query.data.removeprefix(CALLBACK_PREFIX)
        await self._run(update, self.services.rounds.press(action, key, actor, f"tg:cb:{query.id}", view), view)

    async def _parent(self, key: ChannelKey, target: Message) -> Parent:
        """The round one of Easel's messages shows, as (round id or None, message id); None when it shows
        none. The message's own Reroll button names the round (so a reply resolves however quickly it follows
        the image); otherwise the core is asked whether it knows the message. The core checks channel and
        state either way."""
        if target.from_user is None or target.from_user.id != self.bot.id:
            return None
        shown = shown_round(target)
        if shown is not None:
            return shown, str(target.message_id)
        if await self.services.rounds.is_round_message(key, str(target.message_id)):
            return None, str(target.message_id)
        return None

    def _view(self, message: Message) -> TelegramRoundView:
        where = Where(message.chat.id, thread_of(message), message.message_id, is_group(message.chat))
        user = message.from_user
        return TelegramRoundView(self.bot, where, self.pacer, lang=self._lang(user.language_code if user else None))

    async def _run(self, update: Update, round_: Awaitable[None], view: TelegramRoundView) -> None:
        """The core answers through the view; the safety net catches what escapes it."""
        try:
            await answered(round_, lang=view.language(), refuse=view.refuse, what="Telegram round",
                           report=lambda error: self.report(update, error))
        finally:
            await view.close()

    def _is_imagine(self, message: Message) -> bool:
        """Does the caption start with /imagine (or /imagine@<this bot>)?"""
        if not _has_command(message):
            return False
        entities = message.caption_entities
        command = (message.caption or "")[: entities[0].length].lower()
        name, _, bot = command[1:].partition("@")
        return name == "imagine" and (not bot or bot == (self.bot.username or "").lower())

    # -- commands ------------------------------------------------------------------------------------------

    async def _answer(self, update: Update, message: Message, work: Awaitable[str]) -> None:
        """Run a command and reply with its text: user-facing errors say what happened, others apologise."""
        user = message.from_user
        lang = self._lang(user.language_code if user else None)  # the asker's: the core's answers come rendered

        async def refuse(refusal: Refusal) -> None:
            await self._reply(message, refusal.text)

        text = await answered(work, lang=lang, refuse=refuse, what="Telegram command",
                              report=lambda error: self.report(update, error))
        if text:
            await self._reply(message, text)

    async def _reply(self, message: Message, text: str) -> None:
        await send_text(
            self.bot, self.pacer.gate, message.chat.id, text, reply_to_id=message.message_id,
            thread_id=thread_of(message),
        )

    async def _cancel(self, message: Message) -> str:
        """`/cancel` replying to a round's progress message."""
        actor = actor_for(message, await self.mods.is_moderator(message))
        key = message_key(message)
        target = replied(message)
        if target is None:
            return say(self._lang(actor.locale), "round.cancel_which")
        return (await self.services.rounds.cancel(key, actor, str(target.message_id))).text

    async def _language(self, update: Update, message: Message, args: list[str]) -> str:
        """`/language` shows the community's language; `/language auto|en|zh` sets it (moderators)."""
        choice = args[0].lower() if args else None
        if len(args) > 1 or (choice is not None and choice not in LANGUAGES):
            return say(self._lang(actor_for(message).locale), "tg.usage.language")
        actor = actor_for(message, await self.mods.is_moderator(message) if choice else False)
        key = message_key(message)
        await self.services.desk.seen(actor, key.community)
        command = DeskCommand(Verb.LANGUAGE, key, actor, idempotency_key(update, message), language=choice)
        return (await self.services.desk.run(command)).text

    async def _quota(self, update: Update, message: Message, args: list[str]) -> str:
        command = parse_quota(args)
        target = command.user or mentioned(message) or reply_target(message)
        if target is not None and target.user_id is not None and command.user is None:
            # Learn the @username of people moderators point at, for later `<user>` lookups.
            seen = Actor(TELEGRAM, target.user_id, target.display_name or target.user_id, target.username)
            await self.services.desk.seen(seen, str(message.chat.id))
        if command.verb == "show" and _is_self(target, actor_for(message)):
            target = None  # `/quota @me`: one's own credits need no moderator
        needs_moderator = command.verb != "show" or target is not None
        actor = actor_for(message, await self.mods.is_moderator(message) if needs_moderator else False)
        key = message_key(message)
        await self.services.desk.seen(actor, key.community)
        idem = idempotency_key(update, message)
        if command.verb in NEEDS_TARGET and target is None:
            if not (actor.is_moderator or self.settings.is_operator(TELEGRAM, actor.user_id)):
                raise NotModerator("desk.not_moderator")
            raise UsageError(NEED_TARGET)
        verbs = {"show": Verb.SHOW, "default": Verb.DEFAULT, "set": Verb.SET, "grant": Verb.GRANT,
                 "ban": Verb.BAN, "unban": Verb.UNBAN}
        notice = await self.services.desk.run(
            DeskCommand(verbs[command.verb], key, actor, idem, target=target, amount=command.amount)
        )
        return notice.text

    async def _usage(self, message: Message) -> str:
        """`/usage`. Per-user figures (`Notice.detail`) are for the moderator's eyes only: shown inline in a
        private chat; from a group they go to the moderator in a private message, and the group sees the
        totals (only the totals when Telegram will not let Easel write to them first)."""
        actor = actor_for(message, await self.mods.is_moderator(message))
        key = message_key(message)
        await self.services.desk.seen(actor, key.community)
        idem = f"tg:usage:{message.chat.id}:{message.message_id}"
        notice = await self.services.desk.run(DeskCommand(Verb.USAGE, key, actor, idem))
        if notice.detail is None:
            return notice.text
        if message.chat.type == ChatType.PRIVATE:
            return f"{notice.text}\n\n{notice.detail}"
        user = message.from_user
        if user is None or is_anonymous_admin(message):
            return notice.text  # an anonymous admin has no private chat
        lang = self._lang(actor.locale)
        try:
            await send_text(self.bot, self.pacer.gate, user.id, notice.detail)
        except (Forbidden, BadRequest) as error:  # they never started the bot (403), or the chat is gone
            log.info("usage details not sent privately (%s)", type(error).__name__)
            hint = say(lang, "tg.usage.detail_needs_start", bot=self.bot.username or "")
        else:
            hint = say(lang, "tg.usage.detail_sent")
        return f"{notice.text}\n\n{hint}"

    async def _help(self, message: Message) -> str:
        actor = actor_for(message)
        await self.services.desk.seen(actor, str(message.chat.id))
        return self.services.desk.help_text(TELEGRAM, self._lang(actor.locale))

    def _lang(self, locale: str | None) -> str:
        """The asker's client language when Easel speaks it, else the operator's default: for words the
        adapter says itself (the core renders its own answers in the community's language too)."""
        return pick_language(locale, None, self.settings.language)


LANGUAGES = ("auto", "en", "zh")


def _has_command(message: Message) -> bool:
    entities = message.caption_entities
    return bool(entities) and entities[0].type == MessageEntity.BOT_COMMAND and entities[0].offset == 0


def _is_self(target: UserRef | None, actor: Actor) -> bool:
    if target is None:
        return False
    if target.user_id is not None:
        return target.user_id == actor.user_id
    return bool(target.username and actor.username and target.username.lower() == actor.username.lower())


def command_args(message: Message) -> list[str]:
    """The words after the command, minus tapped mentions (a `text_mention` shows a display name, which may
    be several words; `mentioned()` reads the user from the entity)."""
    text = message.text or ""
    for entity, shown in message.parse_entities([MessageEntity.TEXT_MENTION]).items():
        if entity.user is not None:
            text = text.replace(shown, " ", 1)
    return text.split()[1:]


def _after_command(text: str) -> str:
    """What follows `/imagine` (or `/imagine@bot`), line breaks kept."""
    parts = text.split(None, 1)
    return parts[1] if len(parts) > 1 else ""

