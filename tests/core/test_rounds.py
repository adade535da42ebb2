"""The round service on the real SQLite store with the hand-written fake provider: persisted states,
refusals that cost nothing, Cancel, shutdown and resume, deadlines, rerolls, and the desk's limits."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bots.process.app import Core, open_core
from bots.process.config import Settings
from core.errors import ConfigError, NotModerator, UserFacingError
from core.events import Actor, ChannelKey, DeskCommand, Platform, RoundRequest, UserRef, Verb
from core.outcomes import Notice, RoundInfo, RoundResult
from core.records import Balance, Facts, NewRound, Reservation, Round, RoundState, day_of
from core.store.sqlite import SqliteStore
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.recording_view import RecordingView

MakeSettings = Callable[..., Settings]

KEY = ChannelKey(Platform.TELEGRAM, "-1001", "-1001")
OTHER = ChannelKey(Platform.TELEGRAM, "-1001", "-1002")  # another channel of the same community
ALICE = Actor(Platform.TELEGRAM, "1", "Alice", username="alice")
STRANGER = Actor(Platform.TELEGRAM, "2", "Carol", username="carol")
MOD = Actor(Platform.TELEGRAM, "3", "Mo", username="mo", is_moderator=True)
OPERATOR = Actor(Platform.TELEGRAM, "99", "Op", username="op")
WAIT = 10.0


def request(prompt: str, idem: str, actor: Actor = ALICE, key: ChannelKey = KEY, **kw: object) -> RoundRequest:
    return RoundRequest(key=key, actor=actor, prompt=prompt, idempotency_key=idem, **kw)  # type: ignore[arg-type]


async def until(what: str, check: Callable[[], Awaitable[bool]] | Callable[[], bool]) -> None:
    """Wait (bounded) for a condition the code under test makes true; never a fixed sleep."""
    async with asyncio.timeout(WAIT):
        while True:
            outcome = check()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await asyncio.sleep(0.005)
    raise AssertionError(what)  # pragma: no cover


async def used(core: Core, actor: Actor = ALICE, key: ChannelKey = KEY) -> int:
    day = day_of(datetime.now(UTC))
    balance = await core.store.balance(key.platform, key.community, actor.user_id, day, core.settings.daily_credits)
    return balance.used


async def state(core: Core, round_id: int) -> RoundState:
    found = await core.store.get_round(round_id)
    assert found is not None
    return found.state


async def deliver_one(core: Core, idem: str = "k1", actor: Actor = ALICE) -> RecordingView:
    view = RecordingView()
    await core.rounds.submit(request("a red fox", idem, actor), view)
    assert view.result is not None, view.refusal
    return view


def rid(view: RecordingView) -> int:
    assert view.info is not None
    return view.info.round_id


class StateLog(SqliteStore):
    """The real SQLite store, noting every state a round is moved to."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.states: dict[int, list[RoundState]] = {}

    def _note(self, round_id: int, to: RoundState) -> None:
        self.states.setdefault(round_id, []).append(to)

    async def create_round(self, new: NewRound, now: datetime) -> Round:
        created = await super().create_round(new, now)
        self._note(created.id, created.state)
        return created

    async def reserve(self, reservation: Reservation) -> Balance:
        balance = await super().reserve(reservation)
        self._note(reservation.round_id, RoundState.QUEUED)
        return balance

    async def transition(self, round_id: int, to: RoundState, now: datetime, facts: Facts | None = None) -> bool:
        moved = await super().transition(round_id, to, now, facts)
        if moved:
            self._note(round_id, to)
        return moved

    async def deliver(
        self, round_id: int, key: ChannelKey, message_ids: Sequence[str], facts: Facts, now: datetime
    ) -> None:
        await super().deliver(round_id, key, message_ids, facts, now)
        self._note(round_id, RoundState.DELIVERED)

    async def finish(
        self, round_id: int, to: RoundState, reason: str, now: datetime, facts: Facts | None = None
    ) -> int:
        refunded = await super().finish(round_id, to, reason, now, facts)
        self._note(round_id, to)
        return refunded


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


# -- states ---------------------------------------------------------------------------------------------


async def test_states_move_requested_queued_running_delivering_delivered(
    make_settings: MakeSettings, provider: FakeProvider
) -> None:
    settings = make_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = StateLog(settings.db_path)
    async with store, open_core(settings, provider=provider, store=store) as core:
        view = await deliver_one(core)
        await until("delivered recorded", lambda: store.states.get(rid(view), [])[-1:] == [RoundState.DELIVERED])
        assert store.states[rid(view)] == [
            RoundState.REQUESTED,
            RoundState.QUEUED,
            RoundState.RUNNING,
            RoundState.DELIVERING,
            RoundState.DELIVERED,
        ]
        assert view.events == ["started", "deliver"] and view.refusal is None
        assert await used(core) == (await core.store.get_round(rid(view)) or pytest.fail()).cost > 0


async def test_the_delivery_log_says_how_long_the_provider_slot_was_held(
    make_settings: MakeSettings, provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.delay = 0.05  # the call itself; the slot is released when it answers, not after the upload
    async with open_core(make_settings(), provider=provider) as core:
        with caplog.at_level(logging.INFO, logger="core.generation"):
            await deliver_one(core)
            await until("delivery logged", lambda: "delivered" in caplog.text)
    held = re.search(r"provider slot held (\d+) ms", caplog.text)
    assert held is not None, caplog.text
    assert 50 <= int(held.group(1)) < 1000


class UnreachableCap:
    """A per-user cap whose shared count cannot be reached (PostgreSQL gone for a moment)."""

    async def enter(self, user: tuple[str, str], round_id: int) -> bool:
        raise OSError("connection refused")

    def leave(self, user: tuple[str, str]) -> None:
        raise AssertionError("never entered")

    def active(self, user: tuple[str, str]) -> int:
        return 0


async def test_a_cap_that_cannot_be_checked_fails_the_round_free_with_an_apology(
    make_settings: MakeSettings, provider: FakeProvider
) -> None:
    async with open_core(make_settings(), provider=provider) as core:
        core.rounds.shared.deps = dataclasses.replace(core.rounds.deps, caps=UnreachableCap())
        view = RecordingView()
        await core.rounds.submit(request("a red fox", "k1"), view)
        assert view.refusal is not None and view.refusal.reason == "error" and view.result is None
        assert "connection refused" not in view.refusal.text  # never the exception's text
        assert provider.jobs == [] and await used(core) == 0
        assert await core.store.open_rounds() == []  # nothing left open


async def test_a_refused_round_costs_nothing(make_settings: MakeSettings, provider: FakeProvider) -> None:
    async with open_core(make_settings(EASEL_DAILY_CREDITS=0), provider=provider) as core:
        view = RecordingView()
        await core.rounds.submit(request("a red fox", "k1"), view)
        assert view.refusal is not None and view.refusal.reason == "over_quota"
        assert view.result is None and provider.jobs == []
        assert await state(core, rid(view)) is RoundState.REFUSED
        assert await used(core) == 0


# -- cancel ---------------------------------------------------------------------------------------------


async def _start_gated(
    core: Core, provider: FakeProvider, idem: str = "k1"
) -> tuple[asyncio.Task[None], RecordingView]:
    provider.gate = asyncio.Event()
    view = RecordingView()
    task = asyncio.create_task(core.rounds.submit(request("a slow fox", idem), view))
    await until("the provider is called", lambda: provider.in_flight == 1)
    return task, view


@pytest.mark.parametrize("who", [ALICE, MOD], ids=["asker", "moderator"])
async def test_cancel_refunds_and_tells_the_view(core: Core, provider: FakeProvider, who: Actor) -> None:
    task, view = await _start_gated(core, provider)
    assert await used(core) > 0
    assert await core.rounds.cancel_round(rid(view), KEY, who) is None
    await asyncio.wait_for(task, WAIT)
    assert view.result is None and view.refusal is not None and view.refusal.reason == "cancelled"
    assert await state(core, rid(view)) is RoundState.CANCELLED
    assert await used(core) == 0


async def test_cancel_by_a_stranger_is_refused(core: Core, provider: FakeProvider) -> None:
    task, view = await _start_gated(core, provider)
    with pytest.raises(UserFacingError) as refused:
        await core.rounds.cancel_round(rid(view), KEY, STRANGER)
    assert refused.value.reason == "not_yours"
    assert provider.gate is not None
    provider.gate.set()
    await asyncio.wait_for(task, WAIT)
    assert view.result is not None and view.refusal is None
    assert await used(core) == (await core.store.get_round(rid(view)) or pytest.fail()).cost


async def test_cancel_during_delivery_is_too_late_and_charges_once(core: Core, provider: FakeProvider) -> None:
    answers: list[Notice | None] = []

    async def cancel_now(result: RoundResult) -> None:
        answers.append(await core.rounds.cancel_round(result.round_id, KEY, ALICE))

    view = RecordingView(on_deliver=cancel_now)
    await core.rounds.submit(request("a red fox", "k1"), view)
    assert view.result is not None and view.refusal is None
    assert len(answers) == 1 and answers[0] is not None and answers[0].ephemeral
    await until("delivered", lambda: _is(core, rid(view), RoundState.DELIVERED))
    cost = (await core.store.get_round(rid(view)) or pytest.fail()).cost
    assert await used(core) == cost and len(provider.jobs) == 1


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 5])
async def test_cancel_racing_completion_delivers_once_or_refunds_once(
    core: Core, provider: FakeProvider, yields: int
) -> None:
    task, view = await _start_gated(core, provider)
    assert provider.gate is not None
    provider.gate.set()
    for _ in range(yields):
        await asyncio.sleep(0)
    await core.rounds.cancel_round(rid(view), KEY, ALICE)
    await asyncio.wait_for(task, WAIT)
    await until("the round ended", lambda: _is_closed(core, rid(view)))
    cost = (await core.store.get_round(rid(view)) or pytest.fail()).cost
    final = await state(core, rid(view))
    if final is RoundState.DELIVERED:
        assert view.result is not None and view.events.count("deliver") == 1
        assert not [r for r in view.refusals if r.reason == "cancelled"]
        assert await used(core) == cost
    else:
        assert final is RoundState.CANCELLED
        assert view.result is None and [r.reason for r in view.refusals] == ["cancelled"]
        assert await used(core) == 0
    assert len(provider.jobs) == 1


async def _is(core: Core, round_id: int, expected: RoundState) -> bool:
    return await state(core, round_id) is expected


async def _is_closed(core: Core, round_id: int) -> bool:
    return not (await state(core, round_id)).is_open


# -- shutdown and resume --------------------------------------------------------------------------------


async def _leave_open_at_shutdown(settings: Settings, provider: FakeProvider) -> int:
    """Start a background round, then drain: the round stays open for the next start."""
    provider.gate = asyncio.Event()
    view = RecordingView()
    async with open_core(settings, provider=provider) as first:
        task = asyncio.create_task(first.rounds.submit(request("a patient fox", "k1"), view))
        await until("accepted in background", lambda: _has_response(first, view))
        assert await first.rounds.drain(grace=2) == 0
        with pytest.raises(asyncio.CancelledError):  # shutdown cancels the request's task
            await asyncio.wait_for(task, WAIT)
        assert view.result is None and view.refusal is None  # nothing told, nothing refunded
        assert await state(first, rid(view)) is RoundState.RUNNING
        assert await used(first) > 0
    return rid(view)


async def _has_response(core: Core, view: RecordingView) -> bool:
    if view.info is None:
        return False
    found = await core.store.get_round(view.info.round_id)
    return found is not None and found.response_id is not None


async def test_background_round_left_at_shutdown_is_resumed_by_the_next_core(make_settings: MakeSettings) -> None:
    provider = FakeProvider(background=True)
    round_id = await _leave_open_at_shutdown(make_settings(EASEL_WORKER_ID="first"), provider)
    assert provider.cancelled == []
    async with open_core(make_settings(EASEL_WORKER_ID="second"), provider=provider) as second:
        assert second.recovered == 1
        view = RecordingView()
        assert await second.rounds.resume(Platform.TELEGRAM, lambda item: view) == 1
        assert provider.gate is not None
        provider.gate.set()
        await asyncio.wait_for(view.finished.wait(), WAIT)
        assert view.result is not None and view.refusal is None and view.result.round_id == round_id
        await until("delivered", lambda: _is(second, round_id, RoundState.DELIVERED))
        cost = (await second.store.get_round(round_id) or pytest.fail()).cost
        assert await used(second) == cost
        assert [r for r, _ in provider.resumed] == ["resp_1"] and len(provider.jobs) == 1
        assert await second.store.pending_notices(Platform.TELEGRAM) == []  # no "interrupted" notice


async def test_an_expired_response_is_refunded_and_told(make_settings: MakeSettings) -> None:
    provider = FakeProvider(background=True)
    round_id = await _leave_open_at_shutdown(make_settings(EASEL_WORKER_ID="first"), provider)
    provider.forget("resp_1")
    async with open_core(make_settings(EASEL_WORKER_ID="second"), provider=provider) as second:
        view = RecordingView()
        assert await second.rounds.resume(Platform.TELEGRAM, lambda item: view) == 1
        await asyncio.wait_for(view.finished.wait(), WAIT)
        assert view.result is None and view.refusal is not None and view.refusal.reason == "expired"
        assert await state(second, round_id) is RoundState.FAILED
        assert await used(second) == 0


async def test_the_deadline_cancels_and_refunds(make_settings: MakeSettings) -> None:
    clock = FakeClock(datetime.now(UTC))
    provider = FakeProvider(background=True, gate=asyncio.Event())

    async def late(info: RoundInfo) -> None:
        clock.now += timedelta(seconds=20)  # the round has used its 10 s already when it starts

    async with open_core(make_settings(EASEL_ROUND_DEADLINE=10), provider=provider, clock=clock) as core:
        view = RecordingView(on_begin=late)
        await asyncio.wait_for(core.rounds.submit(request("a slow fox", "k1"), view), WAIT)
        assert view.result is None and view.refusal is not None and view.refusal.reason == "timeout"
        assert await state(core, rid(view)) is RoundState.CANCELLED
        assert provider.cancelled == ["resp_1"]
        day = day_of(clock.now)
        balance = await core.store.balance(KEY.platform, KEY.community, ALICE.user_id, day, 10)
        assert balance.used == 0


async def test_a_restart_with_the_same_worker_id_resumes_its_rounds(make_settings: MakeSettings) -> None:
    provider = FakeProvider(background=True)
    settings = make_settings(EASEL_WORKER_ID="same")
    await _leave_open_at_shutdown(settings, provider)
    async with open_core(settings, provider=provider) as second:
        assert second.recovered == 1


# -- rerolls --------------------------------------------------------------------------------------------


async def test_reroll_of_a_round_not_delivered_is_refused(core: Core, provider: FakeProvider) -> None:
    task, first = await _start_gated(core, provider)
    view = RecordingView()
    await core.rounds.press(f"reroll:{rid(first)}", KEY, ALICE, "press-1", view)
    assert view.refusal is not None and view.refusal.reason == "unknown_round"
    assert provider.gate is not None
    provider.gate.set()
    await asyncio.wait_for(task, WAIT)
    assert len(provider.jobs) == 1


async def test_reroll_from_another_channel_is_refused(core: Core, provider: FakeProvider) -> None:
    first = await deliver_one(core)
    view = RecordingView()
    await core.rounds.press(f"reroll:{rid(first)}", OTHER, ALICE, "press-1", view)
    assert view.refusal is not None and view.refusal.reason == "unknown_round"
    assert len(provider.jobs) == 1


async def test_a_double_reroll_press_starts_one_round(core: Core, provider: FakeProvider) -> None:
    first = await deliver_one(core)
    provider.gate = asyncio.Event()
    views = [RecordingView(), RecordingView()]
    presses = [
        asyncio.create_task(core.rounds.press(f"reroll:{rid(first)}", KEY, ALICE, f"press-{n}", views[n]))
        for n in range(2)
    ]
    await until("one reroll runs, one is refused", lambda: provider.in_flight == 1 and any(v.refusal for v in views))
    provider.gate.set()
    await asyncio.wait_for(asyncio.gather(*presses), WAIT)
    assert sorted(v.refusal.reason if v.refusal else "ok" for v in views) == ["ok", "reroll_running"]
    assert len(provider.jobs) == 2  # the original and one reroll


# -- limits ---------------------------------------------------------------------------------------------


async def test_the_rate_limit_counts_refused_requests(make_settings: MakeSettings, provider: FakeProvider) -> None:
    async with open_core(make_settings(EASEL_USER_RATE=2), provider=provider) as core:
        for n in range(2):
            empty = RecordingView()
            await core.rounds.submit(request("   ", f"e{n}"), empty)
            assert empty.refusal is not None and empty.refusal.reason == "bad_request"
        view = RecordingView()
        await core.rounds.submit(request("a red fox", "k1"), view)
        assert view.refusal is not None and view.refusal.reason == "rate_limited"
        assert provider.jobs == [] and await used(core) == 0


def _desk(verb: Verb, actor: Actor, idem: str, target: Actor | None, amount: int | None) -> DeskCommand:
    ref = UserRef(user_id=target.user_id) if target is not None else None
    return DeskCommand(verb=verb, key=KEY, actor=actor, idempotency_key=idem, target=ref, amount=amount)


async def _granted(core: Core, actor: Actor) -> tuple[int, int]:
    day = day_of(datetime.now(UTC))
    balance = await core.store.balance(KEY.platform, KEY.community, actor.user_id, day, core.settings.daily_credits)
    return balance.daily, balance.granted


async def test_moderator_ceiling_and_self_grant_refused_operators_may(make_settings: MakeSettings) -> None:
    settings = make_settings(EASEL_MAX_DAILY_CREDITS=5, EASEL_OPERATORS="telegram:99")
    async with open_core(settings, provider=FakeProvider()) as core:
        for who in (ALICE, MOD, OPERATOR):
            await core.desk.seen(who, KEY.community)
        over = await core.desk.run(_desk(Verb.SET, MOD, "d1", ALICE, 6))
        assert over.ephemeral and over.text == NotModerator("desk.over_ceiling", high=5).message
        grant_over = await core.desk.run(_desk(Verb.GRANT, MOD, "d2", ALICE, 6))
        assert grant_over.ephemeral
        own = await core.desk.run(_desk(Verb.GRANT, MOD, "d3", MOD, 2))
        assert own.ephemeral and own.text == NotModerator("desk.not_yourself").message
        assert await _granted(core, ALICE) == (10, 0) and await _granted(core, MOD) == (10, 0)
        within = await core.desk.run(_desk(Verb.GRANT, MOD, "d4", ALICE, 5))
        assert not within.ephemeral and await _granted(core, ALICE) == (10, 5)
        await core.desk.run(_desk(Verb.SET, OPERATOR, "d5", ALICE, 50))
        await core.desk.run(_desk(Verb.GRANT, OPERATOR, "d6", OPERATOR, 40))
        assert await _granted(core, ALICE) == (50, 5) and await _granted(core, OPERATOR) == (10, 40)


async def test_the_daily_budget_refuses_at_no_cost(make_settings: MakeSettings, provider: FakeProvider) -> None:
    async with open_core(make_settings(EASEL_DAILY_BUDGET_USD="0.000001"), provider=provider) as core:
        view = RecordingView()
        await core.rounds.submit(request("a red fox", "k1"), view)
        assert view.refusal is not None and view.refusal.reason == "budget"
        assert provider.jobs == [] and await used(core) == 0


async def test_a_second_core_on_the_same_data_dir_is_refused(make_settings: MakeSettings) -> None:
    settings = make_settings()
    async with open_core(settings, provider=FakeProvider()):
        with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
            async with open_core(settings, provider=FakeProvider()):
                pass  # pragma: no cover
