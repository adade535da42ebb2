"""Translating discord.py objects into Easel's seam values (keys, actors, input images) and images into files."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp.payload
import discord

from core import texts
from core.errors import BadInputImage
from core.events import Actor, ChannelKey, InputImage, Platform, UserRef
from core.provider.pictures import extension_for

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES  # 10 MiB since 2025-01
MAX_CONTENT = 2000  # Discord's message length limit
CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def channel_key(guild_id: int | None, channel_id: int) -> ChannelKey:
    """A guild channel is keyed by guild; a DM is its own community (DESIGN §4)."""
    if guild_id is None:
        return ChannelKey(Platform.DISCORD, f"dm:{channel_id}", str(channel_id))
    return ChannelKey(Platform.DISCORD, str(guild_id), str(channel_id))


def actor_of(user: discord.abc.User, *, is_moderator: bool = False, locale: str | None = None) -> Actor:
    return Actor(Platform.DISCORD, str(user.id), user.display_name, username=user.name,
                 is_moderator=is_moderator, locale=locale)


def user_ref(user: discord.abc.User) -> UserRef:
    return UserRef(user_id=str(user.id), username=user.name, display_name=user.display_name)


def interaction_key(interaction: discord.Interaction) -> ChannelKey:
    channel_id = interaction.channel_id
    if channel_id is None:  # never for commands and buttons; kept total for the type checker
        raise ValueError("interaction without a channel")
    return channel_key(interaction.guild_id, channel_id)


def interaction_actor(interaction: discord.Interaction) -> Actor:
    """Moderator = Manage Server, read from this interaction's own payload (never a cache); never in DMs."""
    is_moderator = interaction.guild_id is not None and interaction.permissions.manage_guild
    return actor_of(interaction.user, is_moderator=is_moderator, locale=interaction.locale.value)


def interaction_language(interaction: discord.Interaction) -> str:
    """The asker's client language when Easel speaks it (for words shown before the core is asked)."""
    return texts.pick_language(interaction.locale.value, None, texts.DEFAULT_LANGUAGE)


def clip(text: str, limit: int = MAX_CONTENT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Discord markdown that text from users (prompts in captions, names in notices) must never turn into.
_INLINE = re.compile(r"([*_~`|\\])")  # bold, italic, underline, strike, code, spoilers, and the escape itself
_MASKED_LINK = re.compile(r"\[(?=[^\n]*\]\s*\()")  # `[text](url)`: escaping the `[` leaves plain text
_LINE_START = re.compile(r"^(\s*)(#{1,3}\s|-#\s|>>>\s|>\s|[-+]\s)", re.MULTILINE)  # headings, quotes, lists
_NUMBERED = re.compile(r"^(\s*\d+)([.)]\s)", re.MULTILINE)  # "1. " lists: escape the dot
_URL = re.compile(r"(<?https?://[^\s<>]+>?)")  # links stay clickable: a backslash inside would break them


def escape(text: str) -> str:
    """Text shown as written: no heading, subtext, quote, list, masked link, spoiler or emphasis. Mentions
    (`<@id>`) and plain links stay as they are (and mentions never ping: mass mentions are off client-wide).
    Unlike `discord.utils.escape_markdown`, it escapes headings on every line and leaves "#7" alone."""
    parts = _URL.split(text)
    for i in range(0, len(parts), 2):  # the text between links
        parts[i] = _INLINE.sub(r"\\\1", parts[i])
    text = _MASKED_LINK.sub(r"\\[", "".join(parts))
    text = _LINE_START.sub(r"\1\\\2", text)
    return _NUMBERED.sub(r"\1\\\2", text)


def plain(text: str, limit: int = MAX_CONTENT) -> str:
    """A message's content: escaped (see `escape`), then clipped to Discord's limit."""
    return clip(escape(text), limit)


def strip_mentions(content: str, user_id: int) -> str:
    return re.sub(rf"<@!?{user_id}>", " ", content).strip()


def mentions(content: str, user_id: int) -> bool:
    """An explicit @mention in the text (a reply's ping does not count: it is not in the content)."""
    return re.search(rf"<@!?{user_id}>", content) is not None


def is_image(attachment: discord.Attachment) -> bool:
    if attachment.content_type:
        return attachment.content_type.startswith("image/")
    return attachment.filename.lower().endswith(_IMAGE_SUFFIXES)


def sniff_extension(data: bytes) -> str:
    """File extension from the magic bytes (previews come without a MIME type); Discord goes by the name."""
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    return "png"


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes = field(repr=False)
    filename: str

    def file(self) -> discord.File:
        """A fresh File each time: discord.py closes a File once a request used it."""
        return discord.File(SharedBytes(self.data), filename=self.filename)


class SharedBytes(io.BufferedIOBase):
    """A read-only, seekable file over image bytes that aiohttp uploads without copying them.

    `io.BytesIO` would do, but aiohttp sends it through `getbuffer()`, which copies the whole image: with
    many rounds in flight Easel would hold every image twice. discord.py only needs `seek`/`tell` (to
    rewind for a retried request); aiohttp gets a zero-copy `memoryview` through `_SharedPayload`."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        chunk = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return chunk

    def remaining(self) -> memoryview:
        return self._view[self._pos :]


class _SharedPayload(aiohttp.payload.Payload):
    """aiohttp's body for a `SharedBytes`: writes the memoryview itself (no copy, size known up front)."""

    _value: memoryview

    def __init__(self, value: SharedBytes, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "application/octet-stream")
        view = value.remaining()
        super().__init__(view, *args, **kwargs)
        self._size = view.nbytes

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def write(self, writer: Any) -> None:
        await writer.write(self._value)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        await writer.write(self._value if content_length is None else self._value[:content_length])


aiohttp.payload.register_payload(_SharedPayload, SharedBytes, order=aiohttp.payload.Order.try_first)


async def fitted_image(data: bytes, mime: str, limit: int, stem: str) -> Upload:
    """The image as an upload within `limit` bytes; re-encoded only when it does not fit."""
    if len(data) > limit:
        from core.provider.pictures import fit_for_upload  # Pillow work: only when needed, off the event loop

        data, mime, ext = await asyncio.to_thread(fit_for_upload, data, mime, max_bytes=limit)
    else:
        ext = extension_for(mime)
    return Upload(data, f"{stem}.{ext}")


class AttachmentFetcher:
    """Downloads chat attachments for the core, only from the URL in Discord's own payload, with a cap."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str) -> None:
        self._session = session
        api_host = urlsplit(api_url).hostname
        # A REST proxy (EASEL_DISCORD_API_URL) may serve attachments from its own host too.
        self._hosts = CDN_HOSTS | ({api_host} if api_host else set())

    def input_image(self, attachment: discord.Attachment) -> InputImage:
        url, size = attachment.url, attachment.size

        async def fetch(max_bytes: int) -> bytes:
            return await self._download(url, size, max_bytes)

        return InputImage(fetch=fetch, declared_bytes=size, filename=attachment.filename)

    async def _download(self, url: str, declared: int, max_bytes: int) -> bytes:
        too_large = BadInputImage("dc.download.too_large", limit=max_bytes // 1_000_000)
        if declared > max_bytes:
            raise too_large
        if urlsplit(url).hostname not in self._hosts:
            log.warning("refusing to download an attachment from an unexpected host")
            raise BadInputImage("dc.download.failed")
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    log.warning("attachment download failed with HTTP %s", response.status)
                    raise BadInputImage("dc.download.failed")
                if (response.content_length or 0) > max_bytes:
                    raise too_large
                data = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    data += chunk
                    if len(data) > max_bytes:
                        raise too_large
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("attachment download failed: %s", type(exc).__name__)
            raise BadInputImage("dc.download.failed") from None
