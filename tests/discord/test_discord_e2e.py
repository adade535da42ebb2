"""End to end: the real discord.py, the Discord adapter and the real core (store, ledger, studio) built by the
composition root, with the hand-written FakeProvider in place of OpenAI."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bots.discord.bot import DiscordBot
from bots.process.app import Core, open_core
from bots.process.config import Settings
from core.errors import APOLOGY_ID, FatalPlatformError, SafetyRefusal
from core.ports import Services
from core.texts import say
from tests.discord.discord_support import (
    ErrorLog,
    World,
    answer,
    assert_no_mass_mentions,
    buttons,
    discord_settings,
    png,
)
from tests.fakes.fake_discord import FLAG_EPHEMERAL, FakeDiscord, FakeInteraction, FakeMember
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.fake_provider import png as provider_png


@dataclass
class Env:
    fake: FakeDiscord
    world: World
    provider: FakeProvider
    settings: Settings
    core: Core | None = None
    bot: DiscordBot | None = None
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def services(self) -> Services:
        assert self.core is not None
        return self.core.services

    async def open(self) -> None:
        self._stack = AsyncExitStack()
        self.core = await self._stack.enter_async_context(open_core(self.settings, provider=self.provider))
        self.bot = DiscordBot(self.settings, self.core.services, guild_ready_timeout=0.01)
        await self.bot.start()

    async def close(self) -> None:
        if self.bot is not None:
            await self.bot.stop()
        await self._stack.aclose()

    async def restart(self) -> None:
        """A new process on the same data directory: nothing survives but the database."""
        await self.close()
        await self.open()

    async def settle(self) -> None:
        """Wait until every round in flight has finished (commit included): its handler task ends."""
        assert self.core is not None
        while running := set(self.core.rounds._tasks):
            await asyncio.wait(running)

    async def imagine(self, user: FakeMember, prompt: str, *, created_ago: float = 0.0,
                      **options: Any) -> FakeInteraction:
        return await self.fake.slash_command(self.world.guild.channel, user, "imagine",
                                             {"prompt": prompt, **options}, created_ago=created_ago)

    async def delivered(self, interaction: FakeInteraction) -> dict[str, Any]:
        """The result message of an interaction, once the round is committed."""
        await self.fake.wait_until(lambda: bool((m := self.fake.original(interaction)) and m["attachments"]
                                                and not m["content"].startswith("Drawing")),
                                   what=f"result of {interaction.id}")
        await self.settle()
        message = self.fake.original(interaction)
        assert message is not None
        return message

    async def quota(self, who: FakeMember, sub: str, /, **options: Any) -> str:
        """Run a /quota subcommand and return the text the user sees."""
        before = len(self.fake.sends())
        await self.fake.slash_command(self.world.guild.channel, who, "quota", options, subcommand=sub)
        await self.fake.wait_until(lambda: any(
            c.method in ("edit_original", "followup") for c in self.fake.sends()[before:]), what=f"/quota {sub}")
        answer = next(c for c in self.fake.sends()[before:] if c.method in ("edit_original", "followup"))
        return str(answer.params["content"])


@pytest.fixture
async def env(fake: FakeDiscord, world: World, tmp_path: Path, provider: FakeProvider) -> AsyncIterator[Env]:
    settings = discord_settings(fake, tmp_path, EASEL_DAILY_CREDITS="3")
    built = Env(fake, world, provider, settings)
    await built.open()
    yield built
    await built.close()


async def test_slash_generate(env: Env, fake: FakeDiscord, world: World, provider: FakeProvider) -> None:
    provider.partials = 1
    provider.after_partials = asyncio.Event()  # the final image only once the preview is on screen
    interaction = await env.imagine(world.alice, "a red fox", size="portrait")
    await fake.wait_until(lambda: any(c.params.get("content") == "Drawing… (preview)"
                                      for c in fake.calls_to("edit_original")), what="the preview")
    provider.after_partials.set()
    message = await env.delivered(interaction)
    job = provider.jobs[0]
    assert (job.prompt, job.params["size"], job.params["quality"], job.parent) == (
        "a red fox", "1024x1536", "medium", None)
    assert message["content"] == "#1 · a red fox · 2 credits · 1 credit left today"  # portrait/medium costs 2 of 3
    final = fake.calls_to("edit_original")[-1]
    assert final.files["files[0]"] == provider_png(64, 64, (1, 100, 150))
    assert buttons(message) == [("Reroll", "easel:reroll:1")]
    assert [c.params["content"] for c in fake.calls_to("edit_original")][1] == "Drawing… (preview)"
    assert await env.services.rounds.is_round_message(_key(world), message["id"])


async def test_reply_edit_rounds_and_branching(env: Env, fake: FakeDiscord, world: World,
                                               provider: FakeProvider) -> None:
    first = await env.delivered(await env.imagine(world.alice, "a cottage"))
    channel = world.guild.channel
    await fake.user_message(channel, world.bob, "add snow", reply_to=first)
    await fake.wait_for("send_message")
    await env.settle()
    second = fake.messages_in(channel)[-1]
    assert second["content"] == "#2 (from #1) · add snow · 2 credits left today"
    assert provider.jobs[1].parent is not None and provider.jobs[1].parent.response_id == "resp_1"
    await fake.user_message(channel, world.bob, "make it summer", reply_to=first)  # branch from #1 again
    await fake.wait_for("send_message", count=2)
    await env.settle()
    await fake.user_message(channel, world.alice, "add a dog", reply_to=second)
    await fake.wait_for("send_message", count=3)
    await env.settle()
    parents = [job.parent.response_id if job.parent else None for job in provider.jobs]
    assert parents == [None, "resp_1", "resp_1", "resp_2"]
    assert fake.messages_in(channel)[-1]["content"].startswith("#4 (from #2) · add a dog")
    assert_no_mass_mentions(fake)


async def test_edit_command_edits_the_uploaded_image(env: Env, fake: FakeDiscord, world: World,
                                                     provider: FakeProvider) -> None:
    photo = png(48, 36, (250, 10, 10))
    interaction = await fake.slash_command(world.guild.channel, world.alice, "edit", {
        "instruction": "make it green", "image": ("red.png", photo, "image/png")})
    message = await env.delivered(interaction)
    job = provider.jobs[0]
    assert job.prompt == "make it green" and len(job.inputs) == 1
    with Image.open(io.BytesIO(job.inputs[0])) as seen:
        assert seen.size == (48, 36) and seen.convert("RGB").getpixel((0, 0)) == (250, 10, 10)
    assert message["content"].startswith("#1 · make it green")


async def test_mention_with_an_image_edits_it(env: Env, fake: FakeDiscord, world: World,
                                              provider: FakeProvider) -> None:
    photo = png(20, 20, (0, 0, 250))
    await fake.user_message(world.guild.channel, world.bob, "turn it into a sticker", mention_bot=True,
                            attachments=[("blue.png", photo, "image/png")])
    await fake.wait_for("send_message")  # the progress reply, edited into the result
    await env.settle()
    sent = fake.calls_to("edit_message")[-1]
    assert sent.params["content"].startswith("#1 · turn it into a sticker")
    assert provider.jobs[0].inputs and provider.jobs[0].prompt == "turn it into a sticker"


async def test_reroll_button_after_a_restart_is_charged_to_the_presser(
    env: Env, fake: FakeDiscord, world: World, provider: FakeProvider
) -> None:
    first = await env.delivered(await env.imagine(world.alice, "a lighthouse"))
    await env.restart()
    press = await fake.click_button(first, world.bob, "easel:reroll:1")
    rerolled = await env.delivered(press)
    assert provider.jobs[1].prompt == "a lighthouse" and provider.jobs[1].parent is None
    assert rerolled["content"].startswith("#2 · a lighthouse · 2 credits left today")
    assert "2 credits left today" in await env.quota(world.bob, "show")  # bob paid for the reroll
    assert "2 credits left today" in await env.quota(world.alice, "show")  # alice paid only for hers


async def test_quota_verbs_by_a_moderator_change_the_ledger(env: Env, world: World) -> None:
    assert "You have 3 credits left today" in await env.quota(world.bob, "show")
    await env.quota(world.bob, "show")  # bob is now known to the core
    assert "5 credits" in await env.quota(world.mod, "set", user=world.bob, daily=5)
    assert "You have 5 credits left today" in await env.quota(world.bob, "show")
    assert "Granted 2 extra credits" in await env.quota(world.mod, "grant", user=world.bob, credits=2)
    assert "bob has 7 credits left today" in await env.quota(world.mod, "show", user=world.bob)
    assert "4 credits a day" in await env.quota(world.mod, "default", daily=4)
    assert "You have 4 credits left today" in await env.quota(world.alice, "show")
    await env.quota(world.mod, "ban", user=world.bob)
    refused = await _imagine_refusal(env, world.bob)
    assert "Blocked" in refused or "blocked" in refused
    await env.quota(world.mod, "unban", user=world.bob)
    assert (await env.delivered(await env.imagine(world.bob, "free again")))["attachments"]


async def test_quota_verbs_by_a_member_are_refused_and_change_nothing(env: Env, fake: FakeDiscord,
                                                                       world: World) -> None:
    verbs: list[tuple[str, dict[str, Any]]] = [
        ("set", {"user": world.bob, "daily": 0}), ("grant", {"user": world.bob, "credits": 5}),
        ("default", {"daily": 0}), ("ban", {"user": world.bob}), ("show", {"user": world.bob}),
    ]
    for sub, options in verbs:
        interaction = await fake.slash_command(world.guild.channel, world.alice, "quota", options, subcommand=sub)
        shown = await answer(fake, interaction)
        assert shown["content"] == say("en", "desk.not_moderator") and fake.is_ephemeral(shown)
    assert "You have 3 credits left today" in await env.quota(world.bob, "show")
    assert (await env.delivered(await env.imagine(world.bob, "still allowed")))["attachments"]


async def test_refusals_charge_nothing(env: Env, fake: FakeDiscord, world: World,
                                       provider: FakeProvider) -> None:
    over = await _imagine_refusal(env, world.alice, size="landscape", quality="high")  # costs 6 of 3
    assert "credit" in over
    assert fake.calls_to("followup")[-1].params["flags"] & FLAG_EPHEMERAL
    assert not provider.jobs
    provider.fail_next(SafetyRefusal("The image provider's safety system declined that prompt."))
    interaction = await env.imagine(world.alice, "something declined")
    await fake.wait_until(lambda: bool((m := fake.original(interaction)) and "safety" in m["content"]),
                          what="safety refusal")
    await env.settle()
    assert "You have 3 credits left today" in await env.quota(world.alice, "show")


async def test_duplicate_events_do_nothing_twice(env: Env, fake: FakeDiscord, world: World,
                                                 provider: FakeProvider) -> None:
    interaction = await env.imagine(world.alice, "a fox")
    first = await env.delivered(interaction)
    await fake.slash_command(world.guild.channel, world.alice, "imagine", redeliver=interaction)
    await fake.wait_for("400 interaction_callback")
    asked = await fake.user_message(world.guild.channel, world.bob, "add a hat", reply_to=first)
    await fake.wait_for("send_message")
    await env.settle()
    await fake.user_message(world.guild.channel, world.bob, "add a hat", reply_to=first,
                            message_id=int(asked["id"]))
    sentinel = await env.imagine(world.mod, "sentinel")
    await env.delivered(sentinel)
    await env.settle()
    assert [job.prompt for job in provider.jobs] == ["a fox", "add a hat", "sentinel"]
    assert len(fake.calls_to("send_message")) == 1
    assert "You have 2 credits left today" in await env.quota(world.bob, "show")  # charged once


async def test_late_round_goes_to_the_channel_and_stays_editable(
    env: Env, fake: FakeDiscord, world: World, provider: FakeProvider
) -> None:
    await env.imagine(world.alice, "a slow painting", created_ago=14.5 * 60)
    sent = await fake.wait_for("send_message")
    await env.settle()
    assert sent.params["content"].startswith("#1 · a slow painting")
    late = fake.messages_in(world.guild.channel)[-1]
    assert buttons(late) == [("Reroll", "easel:reroll:1")]
    await fake.user_message(world.guild.channel, world.alice, "brighter", reply_to=late)
    await fake.wait_for("send_message", count=2)
    await env.settle()
    assert provider.jobs[1].parent is not None and provider.jobs[1].parent.response_id == "resp_1"


async def test_mass_mentions_never_ping(env: Env, fake: FakeDiscord, world: World) -> None:
    message = await env.delivered(await env.imagine(world.alice, "@everyone @here <@&123> party"))
    assert "@everyone" in message["content"]
    await fake.user_message(world.guild.channel, world.bob, "@everyone more", reply_to=message)
    await fake.wait_for("send_message")
    await env.settle()
    assert_no_mass_mentions(fake)


async def test_a_rejected_upload_is_refunded_and_apologised_for(
    env: Env, fake: FakeDiscord, world: World, error_log: ErrorLog
) -> None:
    first = await env.delivered(await env.imagine(world.alice, "a kite"))
    fake.upload_limit = 100  # the channel now takes less than the guild's tier says: Discord answers 413
    assert len(provider_png(64, 64, (2, 100, 150))) > fake.upload_limit
    await fake.user_message(world.guild.channel, world.alice, "two kites", reply_to=first)
    await fake.wait_for("413 edit_message")  # the progress message could not become the result
    await env.settle()
    apology = fake.calls_to("edit_message")[-1]
    assert apology.params["content"] == say("en", APOLOGY_ID)
    assert "You have 2 credits left today" in await env.quota(world.alice, "show")  # only #1 was charged
    assert any("round 2 failed" in line for line in error_log.take())


@pytest.mark.parametrize("fault", ["bad-token", "missing-intent"])
async def test_fatal_platform_errors_stop_start_up(fake: FakeDiscord, world: World, tmp_path: Path,
                                                    provider: FakeProvider, fault: str) -> None:
    doomed = Env(fake, world, provider, discord_settings(fake, tmp_path))
    if fault == "bad-token":
        fake.token = "a-different-token"  # the configured token is no longer valid
    else:
        fake.privileged_intents = 0
    try:
        with pytest.raises(FatalPlatformError, match="DISCORD_TOKEN" if fault == "bad-token" else "Message Content"):
            await doomed.open()
    finally:
        await doomed.close()
    assert len(fake.calls_to("GATEWAY IDENTIFY")) == (0 if fault == "bad-token" else 1)


async def _imagine_refusal(env: Env, user: FakeMember, **options: Any) -> str:
    """Run /imagine expecting a refusal; return its text (ephemeral followup or public edit)."""
    before = len(env.fake.sends())
    await env.imagine(user, "a refused picture", **options)
    await env.fake.wait_until(lambda: any(c.method in ("followup", "edit_original")
                                          for c in env.fake.sends()[before:]), what="refusal")
    await env.settle()
    answer = next(c for c in env.fake.sends()[before:] if c.method in ("followup", "edit_original"))
    return str(answer.params["content"])


def _key(world: World) -> Any:
    from core.events import ChannelKey, Platform

    return ChannelKey(Platform.DISCORD, str(world.guild.id), str(world.guild.channel.id))


async def test_a_chinese_speaking_member_sees_the_whole_round_in_chinese(
    fake: FakeDiscord, world: World, tmp_path: Path, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued, stage, preview, result caption and buttons for a `zh-CN` client, through discord.py and the real
    core, while an English-speaking member of the same server is answered in English at the same time."""
    base = fake._interaction_base

    def with_locale(kind: int, channel: Any, user: Any, **kw: Any) -> FakeInteraction:
        found = base(kind, channel, user, **kw)
        if user is world.bob.user:
            found.payload["locale"] = "zh-CN"
        return found

    monkeypatch.setattr(fake, "_interaction_base", with_locale)
    env = Env(fake, world, provider, discord_settings(fake, tmp_path, EASEL_PROVIDER_CONCURRENCY="1"))
    provider.partials, provider.gate = 1, asyncio.Event()
    await env.open()
    try:
        english = await env.imagine(world.alice, "a red fox")
        await fake.wait_until(lambda: bool(provider.jobs), what="Alice's round holds the only provider slot")
        chinese = await env.imagine(world.bob, "雪地里的一只红狐狸")
        await fake.wait_until(lambda: any(c.params["_path"].get("token") == chinese.token
                                          for c in fake.calls_to("edit_original")), what="Bob is queued")
        provider.gate.set()
        await env.delivered(english)
        await env.delivered(chinese)
    finally:
        await env.close()

    def shown(interaction: FakeInteraction) -> list[str]:
        words: list[str] = []
        for call in fake.calls_to("edit_original"):
            if call.params["_path"].get("token") == interaction.token:
                words.append(str(call.params.get("content") or ""))
                words += [str(c.get("label") or "") for row in call.params.get("components") or []
                          for c in row.get("components", [])]
        return [w for w in words if w]

    seen = shown(chinese)
    assert say("zh", "progress.next") in seen  # queued
    assert any(s.startswith(say("zh", "progress.thinking", elapsed="")) for s in seen)  # running
    assert say("zh", "progress.preview") in seen
    assert say("zh", "button.cancel") in seen and say("zh", "button.reroll") in seen
    assert any("雪地里的一只红狐狸 · " in s for s in seen), seen  # the result's caption
    latin = [w for s in seen for w in re.findall(r"[A-Za-z]{2,}", re.sub(r"<t:\d+:R>", "", s)) if w != "Easel"]
    assert latin == [], seen
    assert "Reroll" in shown(english) and any("a red fox · " in s for s in shown(english))
