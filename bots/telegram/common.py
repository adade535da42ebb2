"""Small translations from Telegram objects to the core's values: keys, actors, idempotency keys, targets,
and input images fetched through `getFile` under a size cap."""

from __future__ import annotations

from telegram import Bot, Chat, Message, MessageEntity, Update, User
from telegram.constants import ChatType
from telegram.error import BadRequest, NetworkError, TelegramError

from core.errors import BadInputImage
from core.events import Actor, ChannelKey, InputImage, Platform, UserRef

TELEGRAM = Platform.TELEGRAM


def raise_too_large(size: int, limit: int) -> None:
    raise BadInputImage("round.input_too_large", mb=f"{size / 1e6:.1f}", limit=limit // 10**6)
# What the public Bot API lets a bot download (T-g). A self-hosted Bot API server (EASEL_TELEGRAM_API_URL)
# allows much more, so this cap applies only to api.telegram.org. 20 MB rather than 20 MiB keeps the
# refusal's wording ("the most I can take is 20 MB") exact.
PUBLIC_GETFILE_CAP = 20_000_000


def is_group(chat: Chat) -> bool:
    return chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


def thread_of(message: Message) -> int | None:
    """The forum topic a message belongs to (None outside forums: a reply thread is not a topic)."""
    if getattr(message, "is_topic_message", False) and message.message_thread_id:
        return message.message_thread_id
    return None


def channel_key(chat: Chat, thread: int | None) -> ChannelKey:
    # A Telegram chat is both the community (quotas) and the channel (rounds); a forum topic is a thread.
    return ChannelKey(TELEGRAM, str(chat.id), str(chat.id), str(thread) if thread else "")


def message_key(message: Message) -> ChannelKey:
    return channel_key(message.chat, thread_of(message))


def idempotency_key(update: Update, message: Message) -> str:
    # Scheduled messages can arrive with message_id 0 (T-k): fall back to the update id.
    if message.message_id:
        return f"tg:{message.chat.id}:{message.message_id}"
    return f"tg:u:{update.update_id}"


def is_anonymous_admin(message: Message) -> bool:
    return message.sender_chat is not None and message.sender_chat.id == message.chat.id


def from_human(message: Message | None, me: int) -> bool:
    """Messages Easel answers: people, and anonymous admins speaking as the group. Never bots (itself
    included), inline-bot messages, channel posts or automatic forwards from a linked channel (S-11)."""
    if message is None or message.via_bot is not None or message.is_automatic_forward:
        return False
    if message.sender_chat is not None:
        return is_anonymous_admin(message)
    user = message.from_user
    return user is not None and not user.is_bot and user.id != me


def user_actor(user: User, is_moderator: bool = False) -> Actor:
    return Actor(TELEGRAM, str(user.id), user.full_name, user.username, is_moderator, locale=user.language_code)


def actor_for(message: Message, is_moderator: bool = False) -> Actor:
    if is_anonymous_admin(message):
        # Every anonymous admin of a group posts as the group: they share one identity, the group's id.
        sender = message.sender_chat
        assert sender is not None
        return Actor(TELEGRAM, str(sender.id), sender.title or "Anonymous admin", sender.username, is_moderator)
    assert message.from_user is not None
    return user_actor(message.from_user, is_moderator)


def replied(message: Message) -> Message | None:
    """The message this one replies to. In a forum every message "replies" to its topic's opening service
    message; that is not a reply."""
    target = message.reply_to_message
    if target is None or target.forum_topic_created is not None:
        return None
    return target


def reply_target(message: Message) -> UserRef | None:
    """`/quota ...` replying to someone: its author (not a bot, not Easel)."""
    target = replied(message)
    if target is None:
        return None
    if is_anonymous_admin(target):
        chat = target.chat
        return UserRef(user_id=str(chat.id), display_name=chat.title or "Anonymous admin")
    user = target.from_user
    if user is None or user.is_bot or target.sender_chat is not None:
        return None
    return UserRef(user_id=str(user.id), username=user.username, display_name=user.full_name)


def mentioned(message: Message) -> UserRef | None:
    """A tapped mention of a user without a username (a `text_mention` entity carries the user)."""
    for entity in message.entities:
        if entity.type == MessageEntity.TEXT_MENTION and entity.user is not None:
            user = entity.user
            return UserRef(user_id=str(user.id), username=user.username, display_name=user.full_name)
    return None


def has_image(message: Message) -> bool:
    document = message.document
    return bool(message.photo) or (document is not None and (document.mime_type or "").startswith("image/"))


def input_image(bot: Bot, message: Message, hard_cap: int | None) -> InputImage | None:
    """The photo (largest size: Telegram lists sizes smallest first) or image document of `message`, as an
    InputImage whose fetch refuses oversized files before `getFile` and never logs the file URL (it holds
    the token)."""
    if message.photo:
        best = message.photo[-1]
        file_id, declared, name = best.file_id, best.file_size, "photo.jpg"
    elif message.document is not None and has_image(message):
        document = message.document
        file_id, declared, name = document.file_id, document.file_size, document.file_name or "image"
    else:
        return None

    async def fetch(max_bytes: int) -> bytes:
        limit = min(max_bytes, hard_cap) if hard_cap else max_bytes
        if declared is not None and declared > limit:
            raise_too_large(declared, limit)
        try:
            file = await bot.get_file(file_id)
        except BadRequest as error:
            if "too big" in str(error).lower():
                raise BadInputImage("tg.file.too_big") from None
            raise
        if file.file_size is not None and file.file_size > limit:
            raise_too_large(file.file_size, limit)
        try:
            data = await file.download_as_bytearray()
        except TelegramError:
            # The library's message may quote the file URL, which holds the token: say less.
            raise NetworkError("downloading an input image from Telegram failed") from None
        if len(data) > limit:
            raise_too_large(len(data), limit)
        return bytes(data)

    return InputImage(fetch=fetch, declared_bytes=declared, filename=name)
