"""The ledger under concurrency and redelivery, and the moderator verbs' contract, on the real single-writer
store (synchronous=FULL, WAL, one writer thread) and the real studio with the hand-written fake provider."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bots.process.app import Core, open_core
from bots.process.config import Settings
from core import quotas, rounds
from core.errors import DuplicateRequest, NotModerator, OverQuota, SafetyRefusal
from core.events import Actor, ChannelKey, Platform, RoundRequest, UserRef
from core.outcomes import Notice
from core.store.sqlite import Store
from tests.core.test_ledger_model import dump, ledger_problems
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.recording_view import RecordingView

KEY = ChannelKey(Platform.CONSOLE, "c1", "ch1")
OTHER = ChannelKey(Platform.CONSOLE, "c2", "ch2")
ALICE = Actor(Platform.CONSOLE, "1", "Alice", username="alice")
BOB = Actor(Platform.CONSOLE, "2", "Bob", username="bob")
MOD = Actor(Platform.CONSOLE, "500", "Mod", is_moderator=True)
NOON = datetime(2030, 3, 14, 12, 0, tzinfo=UTC)

MakeSettings = Callable[..., Settings]


class Clock:
    def __init__(self, now: datetime = NOON) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def request(idem: str, actor: Actor = ALICE, key: ChannelKey = KEY) -> RoundRequest:
    return RoundRequest(key=key, actor=actor, prompt="a red fox", idempotency_key=idem)


@asynccontextmanager
async def studio_core(
    settings: Settings, provider: FakeProvider | None = None, clock: Clock | None = None
) -> AsyncIterator[Core]:
    async with open_core(settings, provider=provider or FakeProvider(), clock=clock or Clock()) as core:
        yield core


async def left(core: Core, actor: Actor = ALICE, key: ChannelKey = KEY) -> int:
    return (await core.studio.report(key, actor.user_id, "")).left_today


async def ledger_rows(core: Core) -> list[sqlite3.Row]:
    return await core.store.read(lambda c: c.execute("SELECT * FROM ledger ORDER BY id").fetchall())


async def sound(core: Core) -> None:
    assert await core.store.read(ledger_problems) == []


# -- 200 concurrent reservations, 50 credits ----------------------------------------------------------------


async def test_200_concurrent_reservations_against_50_credits_exactly_50_succeed(make_settings: MakeSettings) -> None:
    """Straight on the store, the way the studio does it: claim in one transaction, check-and-reserve in the
    next. 200 tasks interleave on the single writer; the balance check can never race the insert."""
    settings = make_settings(EASEL_DAILY_CREDITS=50)

    async def attempt(store: Store, i: int) -> str:
        item = await store.write(
            lambda c: rounds.claim(
                c,
                idem_key=f"dc:i:{i}",
                key=KEY,
                user_id=ALICE.user_id,
                user_name="Alice",
                parent_id=None,
                kind="generate",
                prompt="p",
                size="square",
                quality="medium",
                input_sha=None,
                now=NOON,
            )
        )

        def reserve(conn: sqlite3.Connection) -> str:
            try:
                quotas.reserve(
                    conn,
                    round_id=item.id,
                    platform=KEY.platform,
                    community=KEY.community,
                    user_id=ALICE.user_id,
                    cost=1,
                    now=NOON,
                    default_daily=settings.daily_credits,
                )
            except OverQuota as refusal:
                rounds.update(conn, item.id, NOON, status="refused", reason=refusal.reason)
                return refusal.reason
            rounds.update(conn, item.id, NOON, status="reserved", cost=1)
            return "reserved"

        return await store.write(reserve)

    async with Store(settings.db_path) as store:
        outcomes = Counter(await asyncio.gather(*(attempt(store, i) for i in range(200))))
        assert outcomes == {"reserved": 50, "over_quota": 150}
        day = quotas.day_of(NOON)
        bal = await store.read(lambda c: quotas.balance(c, "console", "c1", "1", day, 50))
        assert (bal.used, bal.left) == (50, 0)
        reserved = await store.read(
            lambda c: [row[0] for row in c.execute("SELECT id FROM rounds WHERE status = 'reserved'")]
        )

        # Finish them concurrently: half delivered, half refunded (each refund attempted twice).
        async def finish(rid: int, deliver: bool) -> None:
            if deliver:
                await store.write(lambda c: rounds.update(c, rid, NOON, status="delivered"))
                return

            def refund(conn: sqlite3.Connection) -> None:
                quotas.refund(conn, rid, NOON)
                rounds.update(conn, rid, NOON, status="failed", reason="error")

            await asyncio.gather(store.write(refund), store.write(refund))

        await asyncio.gather(*(finish(rid, i % 2 == 0) for i, rid in enumerate(reserved)))
        totals = "SELECT kind, COUNT(*) || '/' || SUM(amount) FROM ledger GROUP BY kind"
        kinds = await store.read(lambda c: dict(c.execute(totals).fetchall()))
        assert kinds == {"reserve": "50/50", "refund": "25/25"}
        bal = await store.read(lambda c: quotas.balance(c, "console", "c1", "1", day, 50))
        assert (bal.used, bal.left) == (25, 25)
        assert await store.read(lambda c: ledger_problems(c, allow_pending=False)) == []


async def test_200_concurrent_studio_rounds_against_50_credits(make_settings: MakeSettings) -> None:
    """The same through `Studio.submit`. The per-user cap is lifted (it would answer "busy" first) so that the
    quota alone decides: 50 images, 150 over-quota refusals, 50 provider calls, 50 credits charged."""
    settings = dataclasses.replace(make_settings(EASEL_DAILY_CREDITS=50), user_concurrency=1000)
    provider = FakeProvider()
    async with studio_core(settings, provider) as core:
        views = [RecordingView() for _ in range(200)]
        await asyncio.gather(*(core.studio.submit(request(f"tg:-100:{i}"), v) for i, v in enumerate(views)))
        assert sum(v.result is not None for v in views) == 50
        assert Counter(v.refusal.reason for v in views if v.refusal) == {"over_quota": 150}
        assert len(provider.jobs) == 50
        rows = await ledger_rows(core)
        assert [r["kind"] for r in rows] == ["reserve"] * 50 and sum(r["amount"] for r in rows) == 50
        assert await left(core) == 0
        statuses = await core.store.read(
            lambda c: dict(c.execute("SELECT status, COUNT(*) FROM rounds GROUP BY status").fetchall())
        )
        assert statuses["delivered"] == 50
        await sound(core)


# -- redelivery ---------------------------------------------------------------------------------------------

KEY_SHAPES = ["tg:-100123:42", "tg:u:777", "tg:cb:4242", "dc:i:123456789", "dc:m:987654321"]


async def assert_one_round_one_charge(core: Core, provider: FakeProvider, views: list[RecordingView]) -> None:
    assert sum(1 for v in views if v.events) == 1, [v.events for v in views]
    assert sum(1 for v in views if v.result) == 1
    assert len(provider.jobs) == 1
    assert await core.store.read(lambda c: c.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]) == 1
    assert [(r["kind"], r["amount"]) for r in await ledger_rows(core)] == [("reserve", 1)]
    assert await left(core) == 9
    await sound(core)


@pytest.mark.parametrize("idem", KEY_SHAPES)
async def test_same_key_three_times_in_a_row(make_settings: MakeSettings, idem: str) -> None:
    provider = FakeProvider()
    async with studio_core(make_settings(), provider) as core:
        views = [RecordingView() for _ in range(3)]
        for view in views:
            await core.studio.submit(request(idem), view)
        await assert_one_round_one_charge(core, provider, views)


@pytest.mark.parametrize("idem", KEY_SHAPES)
async def test_same_key_three_times_at_once(make_settings: MakeSettings, idem: str) -> None:
    provider = FakeProvider()
    async with studio_core(make_settings(), provider) as core:
        views = [RecordingView() for _ in range(3)]
        await asyncio.gather(*(core.studio.submit(request(idem), v) for v in views))
        await assert_one_round_one_charge(core, provider, views)


async def test_redelivery_while_the_round_is_still_running(make_settings: MakeSettings) -> None:
    called = asyncio.Event()
    provider = FakeProvider(gate=asyncio.Event(), on_call=lambda job: called.set())
    async with studio_core(make_settings(), provider) as core:
        first = RecordingView()
        task = asyncio.create_task(core.studio.submit(request("dc:i:1"), first))
        await called.wait()
        copies = [RecordingView(), RecordingView()]
        for view in copies:
            await core.studio.submit(request("dc:i:1"), view)  # returns at once: nothing to do
        assert provider.gate is not None
        provider.gate.set()
        await task
        await assert_one_round_one_charge(core, provider, [first, *copies])


async def test_redelivery_of_a_failed_round_does_not_rerun_it(make_settings: MakeSettings) -> None:
    provider = FakeProvider()
    provider.fail_next(SafetyRefusal("declined"))
    async with studio_core(make_settings(), provider) as core:
        views = [RecordingView() for _ in range(3)]
        for view in views:
            await core.studio.submit(request("tg:-1:5"), view)
        assert views[0].refusal is not None and [v.events for v in views[1:]] == [[], []]
        assert len(provider.jobs) == 1
        assert [r["kind"] for r in await ledger_rows(core)] == ["reserve", "refund"]
        assert await left(core) == 10
        await sound(core)


# -- moderator verbs: redelivery, authority ------------------------------------------------------------------

Verb = Callable[[Core, Actor, str], Coroutine[Any, Any, Notice]]
VERBS: dict[str, Verb] = {
    "grant": lambda core, actor, idem: core.studio.grant(KEY, actor, UserRef(username="@alice"), 5, idem),
    "set_daily": lambda core, actor, idem: core.studio.set_daily(KEY, actor, UserRef(username="alice"), 3, idem),
    "set_default": lambda core, actor, idem: core.studio.set_default(KEY, actor, 2, idem),
    "ban": lambda core, actor, idem: core.studio.ban(KEY, actor, UserRef(user_id="1"), idem),
    "unban": lambda core, actor, idem: core.studio.unban(KEY, actor, UserRef(user_id="1"), idem),
    "credits": lambda core, actor, idem: core.studio.credits(KEY, actor, UserRef(username="alice")),
}
MODERATOR_VERBS = [verb for verb in VERBS if verb != "credits"]


async def test_grant_redelivered_three_times_is_applied_once(make_settings: MakeSettings) -> None:
    async with studio_core(make_settings()) as core:
        await core.studio.seen(ALICE, KEY.community)
        notice = await VERBS["grant"](core, MOD, "tg:-100:9")
        assert "15 credits left today" in notice.text
        for _ in range(2):
            with pytest.raises(DuplicateRequest):
                await VERBS["grant"](core, MOD, "tg:-100:9")
        copies = (VERBS["grant"](core, MOD, "dc:i:77") for _ in range(3))
        results = await asyncio.gather(*copies, return_exceptions=True)
        assert sum(isinstance(r, Notice) for r in results) == 1
        assert sum(isinstance(r, DuplicateRequest) for r in results) == 2
        grants = [(r["kind"], r["amount"], r["actor_id"]) for r in await ledger_rows(core)]
        assert grants == [("grant", 5, "500"), ("grant", 5, "500")]
        assert await left(core) == 20
        await sound(core)


@pytest.mark.parametrize("verb", MODERATOR_VERBS)
async def test_every_moderator_command_is_applied_once_and_audited(make_settings: MakeSettings, verb: str) -> None:
    async with studio_core(make_settings()) as core:
        await core.studio.seen(ALICE, KEY.community)
        await VERBS[verb](core, MOD, "tg:-100:1")
        after_first = await core.store.read(dump)
        results = await asyncio.gather(*(VERBS[verb](core, MOD, "tg:-100:1") for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, DuplicateRequest) for r in results), results
        assert await core.store.read(dump) == after_first
        audit = after_first["audit"]
        assert len(audit) == 1 and audit[0][3:5] == ("500", verb)  # actor_id, action


@pytest.mark.parametrize("verb", VERBS)
async def test_non_moderator_is_refused_and_nothing_changes(make_settings: MakeSettings, verb: str) -> None:
    # Bob is an operator on Telegram, not on the console: that makes him nothing here.
    async with studio_core(make_settings(EASEL_OPERATORS="telegram:2")) as core:
        await core.studio.seen(ALICE, KEY.community)
        await core.studio.submit(request("k1"), RecordingView())
        before = await core.store.read(dump)
        with pytest.raises(NotModerator) as refused:
            await VERBS[verb](core, BOB, "tg:-100:2")
        assert refused.value.message and refused.value.ephemeral
        assert await core.store.read(dump) == before


async def test_easel_operators_make_a_plain_actor_a_moderator(make_settings: MakeSettings) -> None:
    operator = Actor(Platform.CONSOLE, "7", "Owner")  # no platform role at all
    async with studio_core(make_settings(EASEL_OPERATORS="console:7,telegram:8")) as core:
        await core.studio.seen(ALICE, KEY.community)
        for i, verb in enumerate(VERBS):
            notice = await VERBS[verb](core, operator, f"op:{i}")
            assert notice.text
        audit = (await core.store.read(dump))["audit"]
        assert [row[3] for row in audit] == ["7"] * len(MODERATOR_VERBS)
        # The same numeric id on another platform is not the operator.
        with pytest.raises(NotModerator):
            await VERBS["grant"](core, Actor(Platform.CONSOLE, "8", "Someone"), "op:x")


# -- what the verbs mean for credits -------------------------------------------------------------------------


async def deliver(core: Core, idem: str, actor: Actor = ALICE, key: ChannelKey = KEY) -> RecordingView:
    view = RecordingView()
    await core.studio.submit(request(idem, actor, key), view)
    return view


async def test_set_daily_applies_from_today(make_settings: MakeSettings) -> None:
    clock = Clock()
    async with studio_core(make_settings(), clock=clock) as core:
        for i in range(3):
            assert (await deliver(core, f"k{i}")).result is not None
        alice = UserRef(user_id="1")
        notice = await core.studio.set_daily(KEY, MOD, alice, 5, "m1")
        assert "2 credits left today" in notice.text and await left(core) == 2
        await core.studio.set_daily(KEY, MOD, alice, 2, "m2")
        assert await left(core) == 0  # below what she already used: nothing left, never negative
        refused = await deliver(core, "k3")
        assert refused.refusal is not None and refused.refusal.reason == "over_quota"
        assert "0 credits left today" in refused.refusal.text
        await core.studio.set_daily(KEY, MOD, alice, 20, "m3")
        assert await left(core) == 17
        clock.now += timedelta(days=1)
        assert await left(core) == 20
        await sound(core)


async def test_grant_adds_to_today_only(make_settings: MakeSettings) -> None:
    clock = Clock()
    async with studio_core(make_settings(), clock=clock) as core:
        await core.studio.grant(KEY, MOD, UserRef(user_id="1"), 5, "m1")
        assert await left(core) == 15
        assert await left(core, ALICE, OTHER) == 10  # another community is untouched
        clock.now = quotas.next_reset(NOON) - timedelta(microseconds=1)
        assert await left(core) == 15
        clock.now = quotas.next_reset(NOON)
        assert await left(core) == 10
        await sound(core)


async def test_default_daily_applies_to_users_without_their_own(make_settings: MakeSettings) -> None:
    async with studio_core(make_settings()) as core:
        await core.studio.set_daily(KEY, MOD, UserRef(user_id="1"), 7, "m1")
        await core.studio.set_default(KEY, MOD, 3, "m2")
        assert await left(core, BOB) == 3
        assert await left(core, ALICE) == 7  # her own daily credits win
        assert await left(core, BOB, OTHER) == 10  # EASEL_DAILY_CREDITS elsewhere
        await core.studio.set_default(KEY, MOD, 0, "m3")
        refused = await deliver(core, "k1", BOB)
        assert refused.refusal is not None and refused.refusal.reason == "over_quota"
        assert (await deliver(core, "k2", ALICE)).result is not None
        assert await left(core, ALICE) == 6


async def test_ban_refuses_rounds_without_charge_and_unban_restores(make_settings: MakeSettings) -> None:
    provider = FakeProvider()
    async with studio_core(make_settings(), provider) as core:
        await core.studio.ban(KEY, MOD, UserRef(user_id="1"), "m1")
        ledger_before = (await core.store.read(dump))["ledger"]
        refused = await deliver(core, "k1")
        assert refused.refusal is not None and refused.refusal.reason == "banned"
        assert provider.jobs == [] and (await core.store.read(dump))["ledger"] == ledger_before
        assert (await core.studio.report(KEY, "1", "")).banned
        assert (await deliver(core, "k2", ALICE, OTHER)).result is not None  # banned here only
        await core.studio.unban(KEY, MOD, UserRef(user_id="1"), "m2")
        assert (await deliver(core, "k3")).result is not None
        assert await left(core) == 9
        await sound(core)
