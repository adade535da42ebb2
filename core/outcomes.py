"""What the core hands back to adapters: data to render, with the wording already decided here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a result. `action` is opaque to the adapter (e.g. ``reroll:42``); pass it back to
    `Studio.press` unchanged. Platforms cap its length (Telegram: 64 bytes), so it stays short."""

    label: str
    action: str


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


@dataclass(frozen=True, slots=True)
class Refusal:
    text: str
    reason: str
    ephemeral: bool = True


@dataclass(frozen=True, slots=True)
class Notice:
    """A plain message for a channel: answers to quota commands, reports, and start-up notices."""

    text: str
    ephemeral: bool = False


@dataclass(frozen=True, slots=True)
class CreditReport:
    user_id: str
    display_name: str
    left_today: int
    daily: int
    granted_today: int
    used_today: int
    resets_at: datetime
    banned: bool
    text: str


class RoundView(Protocol):
    """How an adapter shows one round. The studio calls these in order: `queued` (maybe, repeatedly),
    `started`, `partial` (zero or more), then exactly one of `deliver` or `refuse`.

    `deliver` returns the platform message ids that now show the image; the charge is committed only after
    it returns, and refunded if it raises. Adapters throttle `partial` to their platform's edit limits."""

    async def queued(self, position: int) -> None: ...

    async def started(self) -> None: ...

    async def partial(self, preview: Preview) -> None: ...

    async def deliver(self, result: RoundResult) -> list[str]: ...

    async def refuse(self, refusal: Refusal) -> None: ...
