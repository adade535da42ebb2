"""What the core hands back to adapters: data to render, with the wording already decided here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a result. `action` is opaque to the adapter (e.g. ``reroll:42``); pass it back to
    `Studio.press` unchanged. Platforms cap its length (Telegram: 64 bytes), so it stays short."""

    label: str
    action: str


class Stage(StrEnum):
    """What a round is doing, for honest progress: shown with the elapsed time."""

    QUEUED = "queued"
    THINKING = "thinking"
    DRAWING = "drawing"
    SENDING = "sending"


@dataclass(frozen=True, slots=True)
class RoundInfo:
    """Told to the view once the round is recorded: what to show on its progress message. `cancel` is the
    Cancel button (for the asker and moderators) while the round is queued or running; `lang` the language
    every word of this round is in."""

    round_id: int
    number: int
    lang: str
    cancel: Button


@dataclass(frozen=True, slots=True)
class Preview:
    image: bytes = field(repr=False)
    index: int
    round_id: int


@dataclass(frozen=True, slots=True)
class RoundResult:
    round_id: int
    number: int  # the round's number within its channel, shown in captions ("#7")
    image: bytes = field(repr=False)
    mime: str = "image/png"
    width: int = 0
    height: int = 0
    caption: str = ""
    credits_left: int = 0
    revised_prompt: str | None = None
    buttons: tuple[Button, ...] = ()
    send_file: bool = False  # also send the original file as a document (Telegram `--file`)
    transparent: bool = False  # keep the alpha: never re-encode to a format without it


@dataclass(frozen=True, slots=True)
class Refusal:
    text: str
    reason: str
    ephemeral: bool = True


@dataclass(frozen=True, slots=True)
class Notice:
    """A plain message for a channel: answers to quota commands, reports, and start-up notices. `detail` is
    for the asker's eyes only (per-user usage figures): shown ephemerally or in a private message, never in
    a group."""

    text: str
    ephemeral: bool = False
    detail: str | None = None


class RoundView(Protocol):
    """How an adapter shows one round. The round service calls these in order: `begin` (once the round is
    recorded), `queued` (maybe, repeatedly), `started`, `stage` and `partial` (zero or more), then exactly one
    of `deliver` or `refuse`. Progress calls never hold up the round (they run in a task of their own).

    `deliver` returns the platform message ids that now show the image; the charge stands once the image is
    visible. `progress_message` names the message showing progress (where Cancel is), if any. Adapters pace
    `stage` and `partial` to their platform's edit limits and show the elapsed time themselves."""

    async def begin(self, info: RoundInfo) -> None: ...

    async def stage(self, stage: Stage) -> None: ...

    def progress_message(self) -> str | None: ...

    async def queued(self, position: int) -> None: ...

    async def started(self) -> None: ...

    async def partial(self, preview: Preview) -> None: ...

    async def deliver(self, result: RoundResult) -> list[str]: ...

    async def refuse(self, refusal: Refusal) -> None: ...


class ProgressDefaults:
    """Defaults for the optional parts of `RoundView`, for views (the console, tests) that show no progress
    message: keep the round's info, ignore stages."""

    info: RoundInfo | None = None

    async def begin(self, info: RoundInfo) -> None:
        self.info = info

    async def stage(self, stage: Stage) -> None:
        return None

    def progress_message(self) -> str | None:
        return None
