"""The ledger under concurrency, property-based: many rounds of several users run their whole lives at once
(double reserves, a cancel racing a delivery, two finishes racing), against any backend.

Invariants, per user and day: reserves - refunds == the cost of the rounds that are delivered or still open;
a round is reserved at most once and refunded at most once; nobody spends beyond their allowance."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, replace
from enum import Enum

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import DuplicateRequest, OverQuota
from core.events import ChannelKey, Platform
from core.ports import Store
from core.records import Balance, Facts, RoundState
from tests.store.support import NOW, TODAY, new_round, reservation

DAILY = 6
SPENT_STATES = {RoundState.QUEUED, RoundState.RUNNING, RoundState.DELIVERING, RoundState.DELIVERED}
_communities = itertools.count(1)


class Ending(Enum):
    DELIVER = "deliver"
    DELIVER_OR_CANCEL = "deliver_or_cancel"
    FAIL = "fail"
    FAIL_TWICE = "fail_twice"
    LEAVE_OPEN = "leave_open"


@dataclass(frozen=True)
class Plan:
    user: int
    cost: int
    double_reserve: bool
    ending: Ending


plans = st.lists(
    st.builds(
        Plan,
        user=st.integers(0, 2),
        cost=st.integers(1, 4),
        double_reserve=st.booleans(),
        ending=st.sampled_from(Ending),
    ),
    min_size=1,
    max_size=14,
)


@dataclass
class Outcome:
    round_id: int
    user: str
    cost: int
    reserved: int  # successful reserve calls
    refunded: int  # sum of what finish() returned


async def _life(store: Store, key: ChannelKey, plan: Plan, index: int) -> Outcome:
    user = f"u{plan.user}"
    made = await store.create_round(replace(new_round(user, key=key), idem_key=f"{key.community}-{index}"), NOW)
    attempts = [store.reserve(reservation(made.id, plan.cost, default_daily=DAILY))]
    if plan.double_reserve:
        attempts.append(store.reserve(reservation(made.id, plan.cost, default_daily=DAILY)))
    results = await asyncio.gather(*attempts, return_exceptions=True)
    for result in results:
        assert isinstance(result, Balance | OverQuota | DuplicateRequest), result
        if isinstance(result, Balance):
            assert result.used <= DAILY
    reserved = sum(isinstance(r, Balance) for r in results)
    outcome = Outcome(made.id, user, plan.cost, reserved, 0)
    if not reserved:
        outcome.refunded += await store.finish(made.id, RoundState.REFUSED, "over_quota", NOW)
        return outcome
    await store.transition(made.id, RoundState.RUNNING, NOW)
    ends: list[asyncio.Future[object]] = []
    if plan.ending in (Ending.DELIVER, Ending.DELIVER_OR_CANCEL):
        ends.append(asyncio.ensure_future(store.deliver(made.id, key, [f"m{made.id}"], Facts(est_usd=0.01), NOW)))
    if plan.ending in (Ending.DELIVER_OR_CANCEL, Ending.FAIL, Ending.FAIL_TWICE):
        ends.append(asyncio.ensure_future(store.finish(made.id, RoundState.CANCELLED, "cancelled", NOW)))
    if plan.ending is Ending.FAIL_TWICE:
        ends.append(asyncio.ensure_future(store.finish(made.id, RoundState.FAILED, "provider", NOW)))
    for value in await asyncio.gather(*ends):
        if isinstance(value, int):
            outcome.refunded += value
    return outcome


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=plans)
async def test_ledger_invariants_under_concurrency(store: Store, plans: list[Plan]) -> None:
    community = f"prop-{next(_communities)}"
    key = ChannelKey(Platform.TELEGRAM, community, community)
    outcomes = await asyncio.gather(*(_life(store, key, plan, i) for i, plan in enumerate(plans)))
    for outcome in outcomes:
        assert outcome.reserved <= 1
        final = await store.get_round(outcome.round_id)
        assert final is not None
        charged = outcome.reserved * outcome.cost - outcome.refunded
        assert charged == (outcome.cost if final.state in SPENT_STATES else 0), (outcome, final.state)
        assert outcome.refunded in (0, outcome.cost)
        if final.state is RoundState.DELIVERED:
            assert outcome.refunded == 0
    for user in {o.user for o in outcomes}:
        balance = await store.balance(Platform.TELEGRAM, community, user, TODAY, DAILY)
        rounds = [await store.get_round(o.round_id) for o in outcomes if o.user == user]
        expected = sum(r.cost for r in rounds if r is not None and r.state in SPENT_STATES)
        assert balance.used == expected
        assert 0 <= balance.used <= DAILY
