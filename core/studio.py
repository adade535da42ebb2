"""The studio: the one service adapters call. SKELETON - the implementation lands next; signatures are the
contract."""

from __future__ import annotations

from dataclasses import dataclass

from core.events import Actor, ChannelKey, Platform, RoundRequest, UserRef
from core.outcomes import Notice, RoundView


@dataclass(frozen=True, slots=True)
class PendingNotice:
    id: int
    key: ChannelKey
    reply_to: str | None
    text: str


class Studio:
    accepting: bool = True

    async def submit(self, request: RoundRequest, view: RoundView) -> None:
        """Run one round to its end: dedupe, validate, reserve, queue, call the provider, deliver through
        `view`, commit or refund. User-facing problems go to `view.refuse`; a duplicate does nothing."""
        raise NotImplementedError

    async def press(
        self, action: str, key: ChannelKey, actor: Actor, idempotency_key: str, view: RoundView
    ) -> None:
        """A button press; `action` is `Button.action` as the core made it (treat it as untrusted)."""
        raise NotImplementedError

    async def is_round_message(self, key: ChannelKey, message_id: str) -> bool:
        raise NotImplementedError

    async def credits(self, key: ChannelKey, actor: Actor, target: UserRef | None = None) -> Notice:
        raise NotImplementedError

    async def set_daily(
        self, key: ChannelKey, actor: Actor, target: UserRef, daily: int, idempotency_key: str
    ) -> Notice:
        raise NotImplementedError

    async def grant(
        self, key: ChannelKey, actor: Actor, target: UserRef, credits: int, idempotency_key: str
    ) -> Notice:
        raise NotImplementedError

    async def set_default(self, key: ChannelKey, actor: Actor, daily: int, idempotency_key: str) -> Notice:
        raise NotImplementedError

    async def ban(self, key: ChannelKey, actor: Actor, target: UserRef, idempotency_key: str) -> Notice:
        raise NotImplementedError

    async def unban(self, key: ChannelKey, actor: Actor, target: UserRef, idempotency_key: str) -> Notice:
        raise NotImplementedError

    async def usage(self, key: ChannelKey, actor: Actor) -> Notice:
        raise NotImplementedError

    async def seen(self, actor: Actor, community: str) -> None:
        raise NotImplementedError

    async def migrate_community(self, platform: Platform, old: str, new: str) -> None:
        raise NotImplementedError

    async def take_notices(self, platform: Platform) -> list[PendingNotice]:
        raise NotImplementedError

    async def notice_sent(self, notice_id: int) -> None:
        raise NotImplementedError

    def help_text(self, platform: Platform) -> str:
        raise NotImplementedError
