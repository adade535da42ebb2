"""Helpers of the Discord adapter tests: the shared FakeServices (our own seam), settings, log capture."""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bots.discord.bot import DiscordBot
from bots.process.config import Settings, load_settings
from tests.fakes._base import Call
from tests.fakes.fake_discord import FakeDiscord, FakeGuild, FakeInteraction, FakeMember
from tests.fakes.fake_services import FakeServices


def png(width: int = 32, height: int = 32, color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def discord_services() -> FakeServices:
    """The shared fake of the services, with captions as the Discord tests expect them (no prompt)."""
    return FakeServices(caption="#{n} · 9 credits left today", result_image=png())


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
