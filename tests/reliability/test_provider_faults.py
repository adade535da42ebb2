"""Provider faults through the real core: the real OpenAI provider (`build_provider`, SDK retries off, Easel's
own retries with a tiny backoff) against FakeOpenAI with a seeded fault mix, rounds submitted through the
Studio with a RecordingView per request, production logging captured at DEBUG.

Proves: every request gets exactly one final answer (an image or a refusal); one round row per request; no
round charged twice; reserve rows = reserved rounds; refund iff not delivered; charged = delivered = images
the fake produced; per-user charge within the daily allowance; provider concurrency within the cap; no
secret in logs, refusals or the database."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from bots.process.app import open_core
from core.events import Actor, ChannelKey, Platform, Quality, RoundRequest, Shape, SpecOptions
from core.provider.factory import build_provider
from tests.fakes.fake_openai import FakeOpenAI
from tests.fakes.recording_view import RecordingView
from tests.reliability.conftest import (
    DISCORD_TOKEN,
    OPENAI_KEY,
    TELEGRAM_TOKEN,
    env_settings,
    ledger,
    scan_for_secrets,
    write_summary,
)
from tests.reliability.faults import CountingProvider, FaultPlan

SEED = int(os.environ.get("EASEL_RELIABILITY_SEED", "7"))
CAP = 8
DAILY = 6


def _requests(rng: random.Random, count: int, users: int) -> list[RoundRequest]:
    """`count` requests from `users` users with a Zipf-like skew (a few heavy users run out of credits)."""
    weights = [1 / (rank + 1) for rank in range(users)]
    requests = []
    for index in range(count):
        user = rng.choices(range(users), weights)[0]
        key = ChannelKey(Platform.CONSOLE, f"community-{user % 5}", f"channel-{user % 5}")
        actor = Actor(Platform.CONSOLE, f"u{user}", f"User {user}", username=f"user{user}")
        size = rng.choices([Shape.SQUARE, Shape.PORTRAIT], [9, 1])[0]
        quality = rng.choices([Quality.MEDIUM, Quality.LOW, Quality.HIGH], [8, 1, 1])[0]
        requests.append(RoundRequest(key, actor, f"prompt {index} for user {user}", f"rel:{SEED}:{index}",
                                     options=SpecOptions(shape=size, quality=quality)))
    return requests


@pytest.mark.parametrize(
    ("route", "count"),
    [
        ("responses", 200),
        pytest.param("images", 120, id="images-120"),
        pytest.param("responses", 1000, marks=pytest.mark.slow, id="responses-1000"),
        pytest.param("images", 1000, marks=pytest.mark.slow, id="images-1000"),
    ],
)
async def test_fault_mix_every_request_answered_once_and_charged_exactly(
    tmp_path: Path, debug_logs: object, route: str, count: int
) -> None:
    rng = random.Random(SEED)
    plan = FaultPlan.build(SEED, count * 3)
    async with FakeOpenAI() as fake:
        settings = env_settings(
            tmp_path / "data", OPENAI_BASE_URL=f"{fake.origin}/v1", EASEL_IMAGE_API=route,
            EASEL_PROVIDER_CONCURRENCY=CAP, EASEL_PROVIDER_TIMEOUT=1, EASEL_DAILY_CREDITS=DAILY,
            EASEL_USER_CONCURRENCY=4, EASEL_PARTIAL_IMAGES=1,
            # Foreground calls, so that a hung request meets EASEL_PROVIDER_TIMEOUT; a background round waits
            # for EASEL_ROUND_DEADLINE (at least 10 s) instead: tests/core/test_rounds.py covers that.
            EASEL_BACKGROUND_MODE="off",
        )
        logs = debug_logs()  # type: ignore[operator]
        plan.load(fake)
        provider = CountingProvider(build_provider(settings, backoff=0.01))
        requests = _requests(rng, count, users=40)
        views = [RecordingView() for _ in requests]
        gate = asyncio.Semaphore(50)  # 50 requests arriving at once, like a busy hour
        started = time.monotonic()
        async with open_core(settings, provider=provider) as core:

            async def one(request: RoundRequest, view: RecordingView) -> None:
                async with gate:
                    await core.rounds.submit(request, view)

            await asyncio.gather(*(one(r, v) for r, v in zip(requests, views, strict=True)))
            elapsed = time.monotonic() - started
            db = settings.db_path
            book = ledger(db, default_daily=DAILY)
            secrets = scan_for_secrets(
                secrets=[OPENAI_KEY, TELEGRAM_TOKEN, DISCORD_TOKEN], logs=logs, db=db,
                extra_text="\n".join(v.refusal.text for v in views if v.refusal),
            )
        finals = Counter(sum(e in ("deliver", "refuse") for e in v.events) for v in views)
        delivered_views = sum(1 for v in views if v.result is not None)
        reasons = Counter(v.refusal.reason for v in views if v.refusal is not None)
        injected = plan.consumed(fake.requests)
        summary = write_summary(
            f"provider-faults-{route}-{count}", seed=SEED, requests=count, seconds=round(elapsed, 2),
            provider_requests=fake.requests, injected=dict(injected), refusals=dict(reasons),
            delivered=delivered_views, billed=fake.billed, peak_studio=provider.peak, peak_fake=fake.peak_in_flight,
            cap=CAP, ledger=book.summary(), secrets=secrets,
        )

    assert finals == Counter({1: count}), f"answers per request: {finals}"
    assert book.idem_keys == {r.idempotency_key for r in requests}, "a request without exactly one round row"
    assert book.problems == [], book.problems[:10]
    assert book.delivered == delivered_views == book.charged == fake.billed, summary
    assert book.refunds == book.reserves - book.delivered
    assert reasons["safety"] == injected["moderation"]
    assert reasons["timeout"] == injected["hang"]
    assert provider.peak <= CAP
    assert fake.peak_in_flight <= CAP + injected["hang"]  # a hung request stays parked in the fake after we leave
    assert secrets["hits"] == {}, secrets
    assert not logs.error_lines(), logs.error_lines()[:5]


async def test_over_quota_refusal_leaves_no_open_round(tmp_path: Path) -> None:
    from tests.fakes.fake_provider import FakeProvider

    settings = env_settings(tmp_path / "data", EASEL_DAILY_CREDITS=1)
    key = ChannelKey(Platform.CONSOLE, "c", "c")
    actor = Actor(Platform.CONSOLE, "1", "One")
    async with open_core(settings, provider=FakeProvider()) as core:
        first, second = RecordingView(), RecordingView()
        await core.rounds.submit(RoundRequest(key, actor, "a fox", "k1"), first)
        await core.rounds.submit(RoundRequest(key, actor, "another fox", "k2"), second)
        assert first.result is not None
        assert second.refusal is not None and second.refusal.reason == "over_quota"
    async with open_core(settings, provider=FakeProvider()) as restarted:
        notices = await restarted.services.notices.take(Platform.CONSOLE)
        recovered = restarted.recovered
    book = ledger(settings.db_path)
    assert book.statuses == Counter({"delivered": 1, "refused": 1}), book.statuses
    assert (recovered, notices) == (0, []), "an over-quota refusal was reported as interrupted by a restart"
