"""Platform faults on top of provider faults, through the real adapters (updates over the real polling loop /
gateway), the real core and the real OpenAI provider.

- Telegram: flood control (429 with `parameters.retry_after`) injected on sendPhoto, sendMessage,
  editMessageText and sendChatAction. Waited out (a retried send never comes before its retry_after), nothing
  lost (every request shows exactly one final message), nothing charged twice.
- Discord: 429s (with the `Via` header discord.py needs) on the interaction callback, edit_original and
  followups, and 502s on edit_original/followup both before the route ran (discord.py retries, no trace) and
  after it ran (the retry duplicates a followup: counted, never charged).

The provider mix here is amplified (5% 500, 5% 429, 5% safety, 2.5% hang) so that a few dozen rounds meet
every fault kind; test_provider_faults runs the realistic mix at volume."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.discord.discord_support import assert_no_mass_mentions
from tests.fakes.fake_discord import MANAGE_GUILD, MEMBER_PERMISSIONS, FakeInteraction
from tests.fakes.fake_openai import FakeOpenAI
from tests.reliability.conftest import (
    DISCORD_TOKEN,
    FILE_URL_MARK,
    OPENAI_KEY,
    TELEGRAM_TOKEN,
    ledger,
    scan_for_secrets,
    settle,
    wait_until,
    write_summary,
)
from tests.reliability.faults import FaultPlan
from tests.reliability.stacks import api_calls, discord_stack, telegram_stack

SEED = int(os.environ.get("EASEL_RELIABILITY_SEED", "7"))
AMPLIFIED = (("server_error", 0.05), ("rate_limit", 0.05), ("moderation", 0.05), ("hang", 0.025))
SECRETS = [TELEGRAM_TOKEN, DISCORD_TOKEN, OPENAI_KEY, FILE_URL_MARK]
ENV: dict[str, Any] = {"EASEL_DAILY_CREDITS": 4, "EASEL_USER_CONCURRENCY": 10, "EASEL_PARTIAL_IMAGES": 1,
       "EASEL_PROVIDER_CONCURRENCY": 4, "EASEL_PROVIDER_TIMEOUT": 1, "EASEL_PROVIDER_CALL_TIMEOUT": 1,
       "EASEL_ROUND_DEADLINE": 10}
PLACEHOLDERS = ("Queued", "Working on it", "Drawing")
FLOOD = 0.05


def _shown(tg: Any, message_id: int) -> list[dict[str, Any]]:
    """Bot messages still in the chat that reply to `message_id` (placeholders are deleted or become the answer)."""
    bot_id = tg.bot_user["id"]
    return [m for m in tg.messages.values() if m.get("from", {}).get("id") == bot_id
            and m.get("reply_to_message", {}).get("message_id") == message_id]


def _final(message: dict[str, Any]) -> bool:
    if "photo" in message:
        return str(message.get("caption", "")).startswith("#")
    return not str(message.get("text", "")).startswith(PLACEHOLDERS)


@pytest.mark.usefixtures("unpaced_groups")
async def test_telegram_flood_control_and_provider_faults(tmp_path: Path, debug_logs: Any) -> None:
    rng = random.Random(SEED)
    logs = debug_logs()
    plan = FaultPlan.build(SEED, 200, AMPLIFIED)
    started = time.monotonic()
    async with FakeOpenAI() as oai, telegram_stack(tmp_path / "data", openai_url=f"{oai.origin}/v1", **ENV) as s:
        tg = s.tg
        plan.load(oai)
        for method, times in (("sendPhoto", 3), ("sendMessage", 3), ("editMessageText", 2), ("sendChatAction", 2)):
            for _ in range(times):
                tg.flood_next(method, retry_after=FLOOD)
        groups = [tg.group_chat(f"G{g}") for g in range(4)]
        people = [tg.user(f"P{i}", f"p{i}") for i in range(8)]
        privates = [tg.private_chat(p) for p in people[:2]]
        asked = []
        for n in range(40):
            if n % 8 == 7:
                chat, who, text = privates[n % 2], people[n % 2], f"private picture {n}"
            else:
                chat, who, text = groups[n % 4], rng.choice(people), f"/imagine picture {n}"
            asked.append(await tg.send_message(chat, who, text))
        ids = [m["message_id"] for m in asked]
        await wait_until(tg, lambda: all(any(_final(m) for m in _shown(tg, i)) for i in ids), timeout=40,
                         what="a final answer to every request")
        await settle(s.tasks)
        elapsed = time.monotonic() - started
        book = ledger(s.settings.db_path, default_daily=ENV["EASEL_DAILY_CREDITS"])
        shown = {i: _shown(tg, i) for i in ids}
        photos = sum(1 for msgs in shown.values() for m in msgs if "photo" in m)
        refusals = Counter(m.get("text", "")[:40] for msgs in shown.values() for m in msgs if "text" in m)
        waits, early = _flood_waits(tg)
        injected = plan.consumed(oai.requests)
        secrets = scan_for_secrets(secrets=SECRETS, logs=logs, db=s.settings.db_path, fakes=[tg])
        summary = write_summary(
            "platform-faults-telegram", seed=SEED, requests=len(ids), seconds=round(elapsed, 2),
            floods=len(waits), shortest_flood_wait=min(waits, default=None), other_sends_to_flooded_chat=early,
            provider_injected=dict(injected),
            delivered=photos, refusals=dict(refusals), billed=oai.billed, billed_not_delivered=oai.billed - photos,
            ledger=book.summary(), secrets=secrets,
        )

    assert all(len(msgs) == 1 and _final(msgs[0]) for msgs in shown.values()), summary
    assert book.rounds == len(ids) and book.problems == [], book.problems
    assert photos == book.delivered == book.charged, summary
    assert oai.billed >= book.delivered  # an image made but not deliverable is refunded, never charged twice
    assert waits and min(waits) >= FLOOD * 0.9, waits  # every flooded send was retried, after its retry_after
    assert secrets["hits"] == {}, secrets


def _identity(call: Any) -> tuple[Any, ...]:
    reply = call.params.get("reply_parameters") or {}
    return (call.method, call.params.get("chat_id"), call.params.get("message_id"), reply.get("message_id"),
            call.params.get("text"), call.params.get("caption"))


def _flood_waits(tg: Any) -> tuple[list[float], int]:
    """For each 429, how long until the same send (method, chat, target, body) was tried again; and how many
    other sends went to the flooded chat before its retry_after ran out (Telegram's limit is per chat)."""
    calls = api_calls(tg)
    assert len(calls) == len(tg.timeline)
    timed = list(zip(calls, tg.timeline, strict=True))
    waits, early = [], 0
    for index, (call, moment) in enumerate(timed):
        if moment.status != 429 or call.method == "sendChatAction":  # not retried: the action loop moves on
            continue
        chat = call.params.get("chat_id")
        early += sum(1 for c, t in timed[index + 1:]
                     if c.params.get("chat_id") == chat and t.at - moment.at < FLOOD
                     and _identity(c) != _identity(call))
        retry = next((t for c, t in timed[index + 1:] if _identity(c) == _identity(call)), None)
        if retry is not None:
            waits.append(round(retry.at - moment.at, 4))
            assert retry.at - moment.at >= FLOOD * 0.9, (call.method, call.params, retry.at - moment.at)
        else:  # progress (chat actions, placeholder edits, previews) is skipped under flood control by design
            optional = call.method == "sendChatAction" or str(call.params.get("text", "")).startswith(PLACEHOLDERS)
            optional = optional or str(call.params.get("caption", "")).startswith("Drawing")
            assert optional, f"a flooded {call.method} was never retried: {call.params}"
    return waits, early


async def test_discord_rate_limits_and_server_errors_with_provider_faults(tmp_path: Path, debug_logs: Any) -> None:
    rng = random.Random(SEED)
    logs = debug_logs()
    plan = FaultPlan.build(SEED + 1, 200, AMPLIFIED)
    started = time.monotonic()
    async with FakeOpenAI() as oai, discord_stack(tmp_path / "data", openai_url=f"{oai.origin}/v1", **ENV) as s:
        fake = s.fake
        plan.load(oai)
        fake.rate_limit_next("interaction_callback", retry_after=FLOOD, times=2)
        fake.rate_limit_next("edit_original", retry_after=FLOOD, times=3)
        fake.rate_limit_next("followup", retry_after=FLOOD, times=1)
        fake.server_error_next("edit_original", after=False)
        fake.server_error_next("edit_original", after=True)
        fake.server_error_next("followup", after=True)
        guild = await fake.guild("Painters")
        members = [fake.member(guild, f"member{i}") for i in range(6)]
        mod = fake.member(guild, "mod", permissions=MEMBER_PERMISSIONS | MANAGE_GUILD)
        asked: list[FakeInteraction] = []
        for n in range(30):
            asked.append(await fake.slash_command(guild.channel, rng.choice(members), "imagine",
                                                  {"prompt": f"picture {n} @everyone"}))
        asked.append(await fake.slash_command(guild.channel, mod, "quota", {"user": members[0], "credits": 3},
                                              subcommand="grant"))
        await fake.wait_until(lambda: all(_answered(fake, i) for i in asked), timeout=40,
                              what="an answer to every interaction")
        await settle(s.tasks)
        elapsed = time.monotonic() - started
        visible = {i.id: fake.replies(i) for i in asked}
        book = ledger(s.settings.db_path, default_daily=ENV["EASEL_DAILY_CREDITS"])
        duplicates = sum(len(v) - 1 for v in visible.values())
        delivered = sum(1 for v in visible.values() if v and v[0]["attachments"])
        injected = plan.consumed(oai.requests)
        tokens = [i.token for i in fake.interactions.values()]
        secrets = scan_for_secrets(secrets=SECRETS + tokens, logs=logs, db=s.settings.db_path, fakes=[fake])
        summary = write_summary(
            "platform-faults-discord", seed=SEED, requests=len(asked), seconds=round(elapsed, 2),
            rate_limited=len([c for c in fake.calls if c.method.startswith("429 ")]),
            server_errors=len([c for c in fake.calls if c.method.startswith("502 ")]),
            duplicate_followups=duplicates, provider_injected=dict(injected), delivered=delivered,
            billed=oai.billed, billed_not_delivered=oai.billed - book.delivered, ledger=book.summary(),
            secrets=secrets,
        )

    assert all(v for v in visible.values()), "an interaction got no answer"
    assert duplicates <= 1, summary  # only the followup that Discord executed before answering 502
    assert book.rounds == len(asked) - 1 and book.problems == [], book.problems
    assert delivered == book.delivered == book.charged, summary
    assert book.grants == 1
    assert len([c for c in fake.calls if c.method.startswith("429 ")]) == 6
    assert_no_mass_mentions(fake)
    assert secrets["hits"] == {}, secrets


def _answered(fake: Any, interaction: FakeInteraction) -> bool:
    shown = fake.replies(interaction)
    return bool(shown) and not shown[0]["content"].startswith(("Drawing", "Queued"))
