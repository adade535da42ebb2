"""Text from users never becomes Discord markdown in a message Easel authored (captions, refusals, notices),
through the real discord.py; mass mentions stay off client-wide."""

from __future__ import annotations

import re

import pytest

from bots.discord.bot import DiscordBot
from bots.discord.common import escape
from core.outcomes import Refusal
from tests.discord.discord_support import World, assert_no_mass_mentions
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_services import FakeServices

HOSTILE = "[free nitro](https://evil.example/claim)\n# HUGE\n-# tiny ||spoiler|| **bold** @everyone <@&1>"


def rendered_markdown(content: str) -> list[str]:
    """What Discord would render as markup in `content` (the constructs that matter here)."""
    found = []
    if re.search(r"(?<!\\)\[[^\]\n]*\]\(", content):
        found.append("masked link")
    if re.search(r"^\s*(#{1,3}|-#)\s", content, re.MULTILINE):
        found.append("heading")
    if re.search(r"(?<!\\)\|(?<!\\)\|", content.replace("\\|", "")):
        found.append("spoiler")
    if re.search(r"(?<!\\)\*\*", content):
        found.append("bold")
    return found


@pytest.fixture
def services() -> FakeServices:
    return FakeServices(caption="#{n} · {prompt} · 9 credits left today")


async def test_a_hostile_prompt_in_the_caption_stays_plain_text(fake: FakeDiscord, world: World, bot: DiscordBot,
                                                                services: FakeServices) -> None:
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": HOSTILE})
    await services.wait_finished()
    message = fake.original(interaction)
    assert message is not None and rendered_markdown(HOSTILE) == ["masked link", "heading", "spoiler", "bold"]
    assert rendered_markdown(message["content"]) == []
    assert message["content"].startswith("#1 · ")  # Easel's own "#1" is not a heading and stays as it is
    assert "https://evil.example/claim" in message["content"]  # the link itself stays intact (not masked)
    assert_no_mass_mentions(fake)


async def test_a_reply_round_and_a_refusal_escape_too(fake: FakeDiscord, world: World, bot: DiscordBot,
                                                     services: FakeServices) -> None:
    services.refusal = Refusal(f"Declined: {HOSTILE}", "safety", ephemeral=False)
    await fake.user_message(world.guild.channel, world.alice, HOSTILE, mention_bot=True)
    await services.wait_finished()
    sent = [c.params["content"] for c in fake.sends() if c.params.get("content")]
    assert sent and all(rendered_markdown(content) == [] for content in sent)
    assert_no_mass_mentions(fake)


@pytest.mark.parametrize(("text", "shown"), [
    ("[a](https://x.y)", "\\[a](https://x.y)"),
    ("# big\n## bigger", "\\# big\n\\## bigger"),
    ("-# small", "\\-# small"),
    ("||secret||", "\\|\\|secret\\|\\|"),
    ("1. first", "1\\. first"),
    ("#7 · 3 credits left today", "#7 · 3 credits left today"),
    ("see https://x.y/a_b_c", "see https://x.y/a_b_c"),
    ("<@123> here is your image.", "<@123> here is your image."),
])
def test_escape(text: str, shown: str) -> None:
    assert escape(text) == shown
