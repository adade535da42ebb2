"""Helpers of the Discord adapter tests: a hand-written FakeStudio (our own seam), settings, log capture."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bots.discord.bot import DiscordBot
from bots.process.config import Settings, load_settings
from core.errors import NotModerator
from core.events import Actor, ChannelKey, Platform, RoundRequest, UserRef
from core.outcomes import Button, Notice, Preview, Refusal, RoundResult, RoundView
from core.records import PendingNotice
from tests.fakes._base import Call
from tests.fakes.fake_discord import FakeDiscord, FakeGuild, FakeInteraction, FakeMember


def png(width: int = 32, height: int = 32, color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class FakeStudio:
    """Records what the adapter asks and plays a round through the adapter's RoundView like the core does:
    dedupe by idempotency key, fetch the input image, queued/started/partials, then deliver or refuse."""

    partials: int = 0
    queue_position: int | None = None
    refusal: Refusal | None = None
    error: BaseException | None = None
    gate: asyncio.Event | None = None
    caption: str = "#{n} · 9 credits left today"
    image: bytes = field(default_factory=png)
    max_input_bytes: int = 20_000_000
    requests: list[RoundRequest] = field(default_factory=list)
    presses: list[tuple[str, ChannelKey, Actor, str]] = field(default_factory=list)
    verbs: list[tuple[Any, ...]] = field(default_factory=list)
    seen_actors: list[tuple[Actor, str]] = field(default_factory=list)
    fetched: list[bytes | BaseException] = field(default_factory=list)
    delivered: list[list[str]] = field(default_factory=list)
    deliver_errors: list[BaseException] = field(default_factory=list)
    duplicates: int = 0
    notices: list[PendingNotice] = field(default_factory=list)
    sent_notices: list[int] = field(default_factory=list)
    notice: Notice = field(default_factory=lambda: Notice("3 credits left today", ephemeral=True))
    round_messages: set[tuple[ChannelKey, str]] = field(default_factory=set)
    accepting: bool = True
    _keys: set[str] = field(default_factory=set)
    finished: int = 0  # submits and presses that returned, whatever the outcome
    _rounds: int = 0
    _done: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def submit(self, request: RoundRequest, view: RoundView) -> None:
        self.requests.append(request)
        await self._round(request.key, request.idempotency_key, view, request)

    async def press(self, action: str, key: ChannelKey, actor: Actor, idempotency_key: str,
                    view: RoundView) -> None:
        self.presses.append((action, key, actor, idempotency_key))
        await self._round(key, idempotency_key, view, None)

    async def _round(self, key: ChannelKey, idem: str, view: RoundView, request: RoundRequest | None) -> None:
        try:
            if idem in self._keys:
                self.duplicates += 1
                return
            self._keys.add(idem)
            if self.error is not None:
                raise self.error
            if request is not None and request.input_image is not None:
                try:
                    self.fetched.append(await request.input_image.fetch(self.max_input_bytes))
                except Exception as exc:
                    self.fetched.append(exc)
                    await view.refuse(Refusal(getattr(exc, "message", "bad image"), "bad_image"))
                    return
            if self.refusal is not None:
                await view.refuse(self.refusal)
                return
            if self.queue_position is not None:
                await view.queued(self.queue_position)
            await view.started()
            self._rounds += 1
            number = self._rounds
            for index in range(self.partials):
                await view.partial(Preview(png(8, 8, (index * 50, 0, 0)), index, number))
            if self.gate is not None:
                await self.gate.wait()
            result = RoundResult(number, number, self.image, caption=self.caption.format(n=number),
                                 credits_left=9, buttons=(Button("Reroll", f"reroll:{number}"),))
            try:
                ids = await view.deliver(result)
            except Exception as exc:  # the core refunds; keep it visible to the test
                self.deliver_errors.append(exc)
                raise
            self.round_messages.update((key, message_id) for message_id in ids)
            self.delivered.append(ids)
        finally:
            self.finished += 1
            async with self._done:
                self._done.notify_all()

    async def wait_rounds(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` submits/presses have finished (delivered, refused or deduped)."""

        async def _wait() -> None:
            async with self._done:
                await self._done.wait_for(lambda: self.finished >= count)

        await asyncio.wait_for(_wait(), timeout)

    async def is_round_message(self, key: ChannelKey, message_id: str) -> bool:
        return (key, message_id) in self.round_messages

    async def _verb(self, name: str, key: ChannelKey, actor: Actor, *args: Any, moderator_only: bool = True) -> Notice:
        self.verbs.append((name, key, actor, *args))
        if moderator_only and not actor.is_moderator:
            raise NotModerator("Only moderators (Manage Server) can do that.")
        return self.notice

    async def credits(self, key: ChannelKey, actor: Actor, target: UserRef | None = None) -> Notice:
        return await self._verb("credits", key, actor, target, moderator_only=target is not None)

    async def set_daily(self, key: ChannelKey, actor: Actor, target: UserRef, daily: int, idem: str) -> Notice:
        return await self._verb("set_daily", key, actor, target, daily, idem)

    async def grant(self, key: ChannelKey, actor: Actor, target: UserRef, credits: int, idem: str) -> Notice:
        return await self._verb("grant", key, actor, target, credits, idem)

    async def set_default(self, key: ChannelKey, actor: Actor, daily: int, idem: str) -> Notice:
        return await self._verb("set_default", key, actor, daily, idem)

    async def ban(self, key: ChannelKey, actor: Actor, target: UserRef, idem: str) -> Notice:
        return await self._verb("ban", key, actor, target, idem)

    async def unban(self, key: ChannelKey, actor: Actor, target: UserRef, idem: str) -> Notice:
        return await self._verb("unban", key, actor, target, idem)

    async def usage(self, key: ChannelKey, actor: Actor) -> Notice:
        return await self._verb("usage", key, actor)

    async def seen(self, actor: Actor, community: str) -> None:
        self.seen_actors.append((actor, community))

    async def take_notices(self, platform: Platform) -> list[PendingNotice]:
        assert platform is Platform.DISCORD
        taken, self.notices = self.notices, []
        return taken

    async def notice_sent(self, notice_id: int) -> None:
        self.sent_notices.append(notice_id)

    def help_text(self, platform: Platform) -> str:
        return "Easel makes images: /imagine prompt:<text>. Reply to an image to edit it."


class ErrorLog(logging.Handler):
    """Collects ERROR records from the adapter, the core and discord.py; a test that expects some takes them."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("bots", "core", "discord")):
            self.records.append(record)

    def take(self) -> list[str]:
        messages = [r.getMessage() for r in self.records]
        self.records.clear()
        return messages


@dataclass
class World:
    guild: FakeGuild
    alice: FakeMember
    bob: FakeMember
    mod: FakeMember


def discord_settings(fake: FakeDiscord, data_dir: Path, **extra: str) -> Settings:
    return load_settings({
        "OPENAI_API_KEY": "sk-test", "DISCORD_TOKEN": fake.token, "EASEL_DATA_DIR": str(data_dir),
        "EASEL_DISCORD_API_URL": fake.api_url, "EASEL_DISCORD_GATEWAY_URL": fake.gateway_url, **extra,
    }, dotenv=None)


StartBot = Callable[..., Awaitable[DiscordBot]]




def payload_of(call: Call) -> dict[str, Any]:
    """The message fields of a sending call (interaction callbacks nest them under `data`)."""
    if call.method == "interaction_callback":
        return dict(call.params.get("data") or {})
    return call.params


def assert_no_mass_mentions(fake: FakeDiscord) -> None:
    """Every call that carries text also carries allowed_mentions that parse nothing and ping no one."""
    for call in fake.sends():
        body = payload_of(call)
        if "content" not in body:
            continue
        assert body.get("allowed_mentions", {}).get("parse") == [], (call.method, body)
        assert body["allowed_mentions"].get("replied_user") in (False, None), (call.method, body)


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["label"], c["custom_id"]) for row in message["components"] for c in row["components"]]


async def answer(fake: FakeDiscord, interaction: FakeInteraction) -> dict[str, Any]:
    """The message the user ends up seeing for an interaction (waits for it)."""
    await fake.wait_until(lambda: bool(fake.replies(interaction)), what=f"answer to {interaction.id}")
    return fake.replies(interaction)[-1]
