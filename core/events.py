"""The seam between adapters and the core: small frozen values that adapters build from platform events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from core.spec import Background, Quality, Shape, SpecOptions


class Platform(StrEnum):
    TELEGRAM = "telegram"
    DISCORD = "discord"
    CONSOLE = "console"


# The image options live with the image spec; re-exported here because adapters parse them into requests.


@dataclass(frozen=True, slots=True)
class ChannelKey:
    """Where a conversation happens. A community is a Discord guild or a Telegram chat; a private chat or
    a Discord DM is its own community. Every piece of channel state is keyed by this value."""

    platform: Platform
    community: str
    channel: str
    thread: str = ""

    def __str__(self) -> str:
        tail = f"/{self.thread}" if self.thread else ""
        return f"{self.platform}:{self.community}/{self.channel}{tail}"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks. `is_moderator` is decided by the adapter from the platform (chat admins, Manage Server);
    the core adds `EASEL_OPERATORS` on top."""

    platform: Platform
    user_id: str
    display_name: str
    username: str | None = None
    is_moderator: bool = False
    locale: str | None = None  # the client's language (Telegram language_code, Discord locale)


@dataclass(frozen=True, slots=True)
class UserRef:
    """A moderator's target: a known id, or a Telegram `@username` the core resolves from users it has seen."""

    user_id: str | None = None
    username: str | None = None
    display_name: str | None = None


# Fetches the bytes of an input image, refusing more than `max_bytes`. Adapters build one from the
# platform's own payload (Telegram getFile, Discord attachment URL) so the core decides *when* to download:
# after the duplicate check, before anything is spent.
FetchImage = Callable[[int], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class InputImage:
    fetch: FetchImage = field(repr=False)
    declared_bytes: int | None = None  # from the platform payload; checked before downloading
    filename: str = "input"


@dataclass(frozen=True, slots=True)
class RoundRequest:
    """One request for an image.

    - `prompt`: the prompt (generate) or the instruction (edit).
    - `reply_to`: the platform message id (in `key`'s channel) that the request replies to, when the adapter
      believes it is one of Easel's images; the core resolves it to a round (the parent) or refuses.
    - `parent_round`: an explicit parent (console `reply N`).
    - `reroll_of`: a round id from a button: same prompt, same parent, charged to whoever pressed.
    - `input_image`: a photo to edit (caption `/imagine ...`, `/edit`, reply to a user's photo).
    - `references`: further input images (an album, Discord `image1..4`), sent with the prompt.
    - `options`: the image options the user set (None keeps the parent's, or the default).
    - `send_file`: also send the original file (Telegram `--file`).
    - `idempotency_key`: from the platform (interaction id, chat+message id, update id); a repeat does nothing.
    """

    key: ChannelKey
    actor: Actor
    prompt: str
    idempotency_key: str
    reply_to: str | None = None
    parent_round: int | None = None
    reroll_of: int | None = None
    input_image: InputImage | None = None
    references: tuple[InputImage, ...] = ()
    options: SpecOptions = field(default_factory=SpecOptions)
    send_file: bool = False

    @property
    def inputs(self) -> tuple[InputImage, ...]:
        return ((self.input_image,) if self.input_image is not None else ()) + self.references



class Verb(StrEnum):
    SHOW = "show"
    SET = "set"
    GRANT = "grant"
    DEFAULT = "default"
    BAN = "ban"
    UNBAN = "unban"
    USAGE = "usage"
    LANGUAGE = "language"  # `language` None shows the current one


@dataclass(frozen=True, slots=True)
class DeskCommand:
    verb: Verb
    key: ChannelKey
    actor: Actor
    idempotency_key: str
    target: UserRef | None = None
    amount: int | None = None
    language: str | None = None


__all__ = [
    "Actor",
    "Background",
    "ChannelKey",
    "DeskCommand",
    "FetchImage",
    "InputImage",
    "Platform",
    "Quality",
    "RoundRequest",
    "Shape",
    "SpecOptions",
    "UserRef",
    "Verb",
]
