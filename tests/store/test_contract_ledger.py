"""Store contract: reserve, balances across days, grants, policies, moderation, budget."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import Banned, BudgetExhausted, DuplicateRequest, OverQuota
from core.events import Platform
from core.ports import Store
from core.records import COMMUNITY_DEFAULT, Balance, ModVerb, RoundState
from tests.store.support import DISCORD, KEY, NOW, TODAY, YESTERDAY_NOON, change, new_round, reservation

P, C = KEY.platform, KEY.community


async def left(store: Store, user: str = "ann", day: str = TODAY, default: int = 10) -> int:
    return (await store.balance(P, C, user, day, default)).left


async def test_reserve_charges_and_queues(store: Store) -> None:
    made = await store.create_round(new_round(), NOW)
    after = await store.reserve(reservation(made.id, 4, est_usd=0.2))
    assert after == Balance(daily=10, granted=0, used=4, banned=False)
    got = await store.get_round(made.id)
    assert got is not None and (got.state, got.cost) == (RoundState.QUEUED, 4)
    assert await left(store) == 6
    assert await store.spend_on(TODAY) == pytest.approx(0.2)


async def test_second_reserve_of_a_round_is_a_duplicate(store: Store) -> None:
    made = await store.create_round(new_round(), NOW)
    await store.reserve(reservation(made.id, 2))
    with pytest.raises(DuplicateRequest):
        await store.reserve(reservation(made.id, 2))
    assert await left(store) == 8


async def test_over_quota_writes_nothing(store: Store) -> None:
    spent = await store.create_round(new_round(), NOW)
    await store.reserve(reservation(spent.id, 8))
    made = await store.create_round(new_round(), NOW)
    with pytest.raises(OverQuota) as caught:
        await store.reserve(reservation(made.id, 3, est_usd=1.0))
    assert caught.value.left == 2
    assert caught.value.params["cost"] == 3
    assert caught.value.resets_at == (NOW + timedelta(days=1)).replace(hour=0)
    got = await store.get_round(made.id)
    assert got is not None and (got.state, got.cost) == (RoundState.REQUESTED, 0)
    assert await left(store) == 2
    assert await store.spend_on(TODAY) == pytest.approx(0.04)
    assert await store.finish(made.id, RoundState.REFUSED, "over_quota", NOW) == 0


async def test_banned_writes_nothing(store: Store) -> None:
    await store.moderate(change(ModVerb.BAN, "ann"))
    made = await store.create_round(new_round(), NOW)
    with pytest.raises(Banned):
        await store.reserve(reservation(made.id, 1))
    got = await store.get_round(made.id)
    assert got is not None and got.state is RoundState.REQUESTED
    assert (await store.balance(P, C, "ann", TODAY, 10)).banned
    await store.moderate(change(ModVerb.UNBAN, "ann"))
    await store.reserve(reservation(made.id, 1))
    assert await left(store) == 9


async def test_budget_ceiling_across_communities(store: Store) -> None:
    a = await store.create_round(new_round("ann"), NOW)
    await store.reserve(reservation(a.id, est_usd=0.6, budget_usd=1.0))
    b = await store.create_round(new_round("bob", key=DISCORD), NOW)
    with pytest.raises(BudgetExhausted) as caught:
        await store.reserve(reservation(b.id, est_usd=0.5, budget_usd=1.0))
    assert caught.value.resets_at == (NOW + timedelta(days=1)).replace(hour=0)
    got = await store.get_round(b.id)
    assert got is not None and got.state is RoundState.REQUESTED
    assert (await store.balance(DISCORD.platform, DISCORD.community, "bob", TODAY, 10)).used == 0
    await store.finish(a.id, RoundState.FAILED, "provider", NOW)  # a failed queued round spent nothing
    assert await store.spend_on(TODAY) == 0
    await store.reserve(reservation(b.id, est_usd=0.5, budget_usd=1.0))


async def test_refund_counts_on_the_reserve_day(store: Store) -> None:
    made = await store.create_round(new_round(), YESTERDAY_NOON)
    await store.reserve(reservation(made.id, 5, now=YESTERDAY_NOON))
    yesterday = (NOW - timedelta(days=1)).strftime("%Y-%m-%d")
    assert await left(store, day=yesterday) == 5
    assert await left(store) == 10
    assert await store.finish(made.id, RoundState.FAILED, "interrupted", NOW) == 5
    assert await left(store, day=yesterday) == 10
    assert await left(store) == 10


async def test_grants_add_to_the_day_only(store: Store) -> None:
    await store.moderate(change(ModVerb.GRANT, "ann", 5, now=YESTERDAY_NOON))
    await store.moderate(change(ModVerb.GRANT, "ann", 3))
    await store.moderate(change(ModVerb.GRANT, "ann", 2, actor="mod2"))
    assert await left(store) == 15
    assert await store.granted_by(P, C, "mod", TODAY) == 3
    assert await store.granted_by(P, C, "mod2", TODAY) == 2
    assert await store.granted_by(P, C, "nobody", TODAY) == 0


async def test_policies_user_over_default_over_setting(store: Store) -> None:
    assert await left(store, default=7) == 7
    await store.moderate(change(ModVerb.SET_DEFAULT, None, 4))
    assert await left(store, default=7) == 4
    await store.moderate(change(ModVerb.SET_DAILY, "ann", 20))
    assert await left(store, default=7) == 20
    assert await left(store, "bob", default=7) == 4
    await store.moderate(change(ModVerb.BAN, "ann"))  # a ban keeps the allowance
    balance = await store.balance(P, C, "ann", TODAY, 7)
    assert (balance.daily, balance.banned) == (20, True)
    await store.moderate(change(ModVerb.SET_DAILY, COMMUNITY_DEFAULT, 9))  # same row as set_default
    assert await left(store, "bob", default=7) == 9


async def test_daily_set_today_applies_to_what_was_used(store: Store) -> None:
    made = await store.create_round(new_round(), NOW)
    await store.reserve(reservation(made.id, 6))
    await store.moderate(change(ModVerb.SET_DAILY, "ann", 8))
    assert await left(store) == 2
    await store.moderate(change(ModVerb.SET_DAILY, "ann", 3))
    assert await left(store) == 0


async def test_moderation_duplicates_change_nothing(store: Store) -> None:
    await store.moderate(change(ModVerb.GRANT, "ann", 5, idem_key="mod-1"))
    with pytest.raises(DuplicateRequest):
        await store.moderate(change(ModVerb.GRANT, "ann", 5, idem_key="mod-1"))
    with pytest.raises(DuplicateRequest):
        await store.moderate(change(ModVerb.SET_DAILY, "ann", 50, idem_key="mod-1"))
    assert await left(store) == 15


async def test_language_per_community(store: Store) -> None:
    assert await store.community_language(P, C) is None
    await store.moderate(change(ModVerb.LANGUAGE, None, text_value="zh"))
    assert await store.community_language(P, C) == "zh"
    assert await store.community_language(Platform.DISCORD, C) is None
    await store.moderate(change(ModVerb.LANGUAGE, None, text_value=None))
    assert await store.community_language(P, C) is None


async def test_balances_are_per_community(store: Store) -> None:
    made = await store.create_round(new_round(key=DISCORD), NOW)
    await store.reserve(reservation(made.id, 4))
    assert await left(store) == 10
    assert (await store.balance(DISCORD.platform, DISCORD.community, "ann", TODAY, 10)).left == 6


async def test_migrate_community_moves_everything(store: Store) -> None:
    made = await store.create_round(new_round(), NOW)
    await store.reserve(reservation(made.id, 2))
    await store.attach_messages(made.id, KEY, ["m1"])
    await store.moderate(change(ModVerb.SET_DAILY, "ann", 6))
    await store.moderate(change(ModVerb.LANGUAGE, None, text_value="zh"))
    await store.add_notice(KEY, None, "hello", NOW)
    new = "-100999"
    new_key = type(KEY)(P, new, new)
    await store.moderate(change(ModVerb.SET_DAILY, "ann", 12, key=new_key))  # set after the upgrade: wins
    await store.migrate_community(P, C, new)
    assert (await store.balance(P, new, "ann", TODAY, 10)).left == 10
    assert (await store.balance(P, C, "ann", TODAY, 10)).used == 0
    assert await store.community_language(P, new) == "zh"
    moved = await store.round_by_number(new_key, 1)
    assert moved is not None and moved.id == made.id
    assert await store.round_by_message(new_key, "m1") == moved
    notices = await store.pending_notices(P)
    assert [n.key for n in notices] == [new_key]
    totals = await store.usage_totals(P, new, TODAY)
    assert totals.credits == 2
