"""Redelivery: every update / gateway event delivered three times, shuffled, concurrently, through the real
adapter, the real core and the real OpenAI provider (FakeOpenAI). Must give exactly the provider calls and
charges of one delivery: one round per distinct request, one image per round, one reply per request,
moderator grants applied once. Both platforms' idempotency key shapes: Telegram `tg:<chat>:<message>` and
`tg:cb:<query>`, Discord `dc:i:<interaction>` and `dc:m:<message>`. Logs (DEBUG), outbound bodies and the
database are scanned for secrets during the run."""

from __future__ import annotations

import asyncio
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
    write_summary,
)
from tests.reliability.stacks import discord_stack, telegram_stack, tg_press, tg_text

SEED = int(os.environ.get("EASEL_RELIABILITY_SEED", "7"))
COPIES = 3
ENV: dict[str, Any] = {"EASEL_DAILY_CREDITS": 50, "EASEL_USER_CONCURRENCY": 50, "EASEL_PARTIAL_IMAGES": 1,
       "EASEL_PROVIDER_CONCURRENCY": 8}
SECRETS = [TELEGRAM_TOKEN, DISCORD_TOKEN, OPENAI_KEY, FILE_URL_MARK]


async def _redeliver(rng: random.Random, items: list[Any], deliver: Any, parallel: int = 50) -> None:
    """Each item COPIES times, shuffled, `parallel` deliveries in flight at once."""
    copies = [item for item in items for _ in range(COPIES)]
    rng.shuffle(copies)
    gate = asyncio.Semaphore(parallel)

    async def one(item: Any) -> None:
        async with gate:
            await deliver(item)

    await asyncio.gather(*(one(item) for item in copies))


def _result_photos(tg: Any) -> list[dict[str, Any]]:
    """The result images in the chats: sent as a photo, or a waiting message edited into the photo."""
    bot_id = tg.bot_user["id"]
    return [m for m in tg.messages.values() if m.get("from", {}).get("id") == bot_id and m.get("photo")
            and str(m.get("caption", "")).startswith("#")]


@pytest.mark.usefixtures("unpaced_groups")
async def test_telegram_every_update_three_times_shuffled(tmp_path: Path, debug_logs: Any) -> None:
    rng = random.Random(SEED)
    logs = debug_logs()
    started = time.monotonic()
    async with FakeOpenAI() as oai, telegram_stack(tmp_path / "data", openai_url=f"{oai.origin}/v1", **ENV) as s:
        tg = s.tg
        groups, members, admins = [], [], []
        for g in range(3):
            admin = tg.user(f"Admin{g}", f"admin{g}")
            group = tg.group_chat(f"Group {g}", admins=[admin])
            groups.append(group)
            admins.append(admin)
            members.append([tg.user(f"M{g}{i}", f"m{g}{i}") for i in range(4)])
        loners = [tg.user(f"Solo{i}", f"solo{i}") for i in range(4)]
        privates = [tg.private_chat(u) for u in loners]
        first: list[dict[str, Any]] = []
        for n in range(24):
            g = n % 3
            first.append(tg_text(groups[g], rng.choice(members[g]), f"/imagine picture {n}"))
        for n in range(8):
            first.append(tg_text(privates[n % 4], loners[n % 4], f"a private picture {n}"))
        grants = [tg_text(groups[g], admins[g], f"/quota grant 2 {members[g][0]['id']}") for g in range(3)]
        first += grants
        await _redeliver(rng, first, s.deliver)
        await settle(s.tasks)

        # Second phase: edit rounds (text replies to results) and Reroll presses, again three times each.
        results = tg.sent_messages("sendPhoto")
        results = [m for m in results if str(m.get("caption", "")).startswith("#") and m["chat"]["type"] != "private"]
        assert len(results) == 24, len(results)
        chosen = rng.sample(results, 10)
        member_of = {group["id"]: members[i] for i, group in enumerate(groups)}
        second: list[dict[str, Any]] = []
        for index, result in enumerate(chosen[:5]):
            second.append(tg_text(result["chat"], rng.choice(member_of[result["chat"]["id"]]),
                                  f"make it brighter {index}", reply_to=result))
        presses = []
        for result in chosen[5:]:
            data = result["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            presses.append(tg_press(tg, rng.choice(member_of[result["chat"]["id"]]), result, data))
        second += presses
        await _redeliver(rng, second, s.deliver)
        await settle(s.tasks)
        elapsed = time.monotonic() - started
        book = ledger(s.settings.db_path, default_daily=ENV["EASEL_DAILY_CREDITS"])
        secrets = scan_for_secrets(secrets=SECRETS, logs=logs, db=s.settings.db_path, fakes=[tg])

        photos = _result_photos(tg)
        per_origin = Counter(tg.reply_origin[(m["chat"]["id"], m["message_id"])] for m in photos)
        answers = Counter(c.params.get("reply_parameters", {}).get("message_id") for c in tg.calls_to("sendMessage"))
        distinct = len(first) - len(grants) + len(second)
        summary = write_summary(
            "redelivery-telegram", seed=SEED, distinct_requests=len(first) + len(second),
            deliveries=COPIES * (len(first) + len(second)), rounds=book.rounds, provider_requests=oai.requests,
            billed=oai.billed, result_photos=len(photos), grants=book.grants, seconds=round(elapsed, 2),
            ledger=book.summary(), secrets=secrets,
        )

    assert oai.requests == oai.billed == distinct, summary
    assert book.rounds == book.reserves == book.delivered == book.charged == distinct and book.refunds == 0
    assert book.problems == [], book.problems
    assert book.grants == len(grants)
    origins = [u["message"]["message_id"] for u in first[:32] + second[:5]]
    origins += [u["callback_query"]["message"]["message_id"] for u in presses]
    assert sorted(per_origin) == sorted(origins) and set(per_origin.values()) == {1}, per_origin
    assert all(answers[g["message"]["message_id"]] == 1 for g in grants), "a grant answered more or less than once"
    assert secrets["hits"] == {}, secrets
    assert not logs.error_lines(), logs.error_lines()[:5]


async def test_discord_every_event_three_times_shuffled(tmp_path: Path, debug_logs: Any) -> None:
    rng = random.Random(SEED)
    logs = debug_logs()
    started = time.monotonic()
    async with FakeOpenAI() as oai, discord_stack(tmp_path / "data", openai_url=f"{oai.origin}/v1", **ENV) as s:
        fake = s.fake
        guild = await fake.guild("Painters", channels=("general", "random"))
        members = [fake.member(guild, f"member{i}") for i in range(6)]
        mod = fake.member(guild, "mod", permissions=MEMBER_PERMISSIONS | MANAGE_GUILD)
        dm_users = [fake.user(f"dm{i}") for i in range(2)]
        dms = [fake.dm_channel(u) for u in dm_users]
        fake.holding = True
        commands: list[FakeInteraction] = []
        for n in range(24):
            channel = guild.channels[n % 2]
            commands.append(await fake.slash_command(channel, rng.choice(members), "imagine",
                                                     {"prompt": f"picture {n}"}))
        for n in range(4):
            commands.append(await fake.slash_command(dms[n % 2], dm_users[n % 2], "imagine",
                                                     {"prompt": f"dm picture {n}"}))
        grants = [await fake.slash_command(guild.channel, mod, "quota", {"user": members[i], "credits": 2},
                                           subcommand="grant") for i in range(3)]
        events = list(fake.held)
        fake.held.clear()
        fake.holding = False
        await _redeliver(rng, events, lambda e: fake.release([e]))
        await fake.wait_until(lambda: all(_answered(fake, i) for i in commands + grants), timeout=30,
                              what="an answer to every interaction")
        await settle(s.tasks)

        results = [fake.original(i) for i in commands[:24]]
        chosen = rng.sample(results, 10)
        fake.holding = True
        replies = [await fake.user_message(guild.channels[0] if m["channel_id"] == str(guild.channels[0].id)
                                           else guild.channels[1], rng.choice(members), f"brighter {k}",
                                           reply_to=m)
                   for k, m in enumerate(chosen[:5]) if m is not None]
        presses = [await fake.click_button(m, rng.choice(members), m["components"][0]["components"][0]["custom_id"])
                   for m in chosen[5:] if m is not None]
        events = list(fake.held)
        fake.held.clear()
        fake.holding = False
        await _redeliver(rng, events, lambda e: fake.release([e]))
        await fake.wait_until(lambda: all(_answered(fake, i) for i in presses)
                              and all(_replied(fake, m) for m in replies), timeout=30, what="edit rounds and rerolls")
        await settle(s.tasks)
        elapsed = time.monotonic() - started
        book = ledger(s.settings.db_path, default_daily=ENV["EASEL_DAILY_CREDITS"])
        tokens = [i.token for i in fake.interactions.values()]
        secrets = scan_for_secrets(secrets=SECRETS + tokens, logs=logs, db=s.settings.db_path, fakes=[fake])
        distinct = len(commands) + len(replies) + len(presses)
        second_acks = len(fake.calls_to("400 interaction_callback"))
        reply_sends = Counter(str(c.params["message_reference"]["message_id"]) for c in fake.calls_to("send_message")
                              if c.params.get("message_reference"))
        summary = write_summary(
            "redelivery-discord", seed=SEED, distinct_requests=distinct + len(grants),
            deliveries=COPIES * (distinct + len(grants)), rounds=book.rounds, provider_requests=oai.requests,
            billed=oai.billed, refused_second_acks=second_acks, grants=book.grants, seconds=round(elapsed, 2),
            ledger=book.summary(), secrets=secrets,
        )

    assert oai.requests == oai.billed == distinct, summary
    assert book.rounds == book.reserves == book.delivered == book.charged == distinct and book.refunds == 0
    assert book.problems == [], book.problems
    assert book.grants == len(grants)
    assert second_acks == (COPIES - 1) * (len(commands) + len(grants) + len(presses))
    for interaction in commands + presses:
        shown = fake.replies(interaction)
        assert len(shown) == 1 and shown[0]["attachments"] and shown[0]["content"].startswith("#"), shown
    assert all(reply_sends[m["id"]] == 1 for m in replies), reply_sends
    assert_no_mass_mentions(fake)
    assert secrets["hits"] == {}, secrets
    assert not logs.error_lines(), logs.error_lines()[:5]


def _answered(fake: Any, interaction: FakeInteraction) -> bool:
    original = fake.original(interaction)
    return bool(fake.replies(interaction)) and not (original and original["content"].startswith(("Drawing", "Que")))


def _replied(fake: Any, message: dict[str, Any]) -> bool:
    return any(m.get("message_reference", {}).get("message_id") == message["id"] and m["content"].startswith("#")
               for m in fake.messages.values())
