"""Store contract: users, notices, the inbox, usage reports, forgetting a user, health."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from core.events import ChannelKey, Platform, UserRef
from core.ports import Store
from core.records import Facts, InboxItem, RoundKind, RoundState
from core.spec import ImageSpec, Quality
from tests.store.support import DISCORD, KEY, NOW, TODAY, YESTERDAY_NOON, new_round, reservation

P, C = KEY.platform, KEY.community


async def test_health_and_salt(store: Store) -> None:
    assert await store.writable()
    salt = await store.safety_salt()
    assert len(salt) >= 32
    assert await store.safety_salt() == salt
    await store.checkpoint()


async def test_users_by_id_and_username(store: Store) -> None:
    assert await store.find_user(P, UserRef(username="@Ann")) is None
    await store.remember_user(P, "1", "Ann_T", "Ann T", NOW)
    await store.remember_user(P, "2", None, "Bob", NOW)
    assert await store.find_user(P, UserRef(username="@ann_t")) == ("1", "Ann T")
    assert await store.find_user(P, UserRef(username="ANN_T")) == ("1", "Ann T")
    assert await store.find_user(P, UserRef(user_id="2")) == ("2", "Bob")
    assert await store.find_user(Platform.DISCORD, UserRef(user_id="2")) is None
    await store.remember_user(P, "3", "ann_t", "New Ann", NOW + timedelta(minutes=1))  # the name moved on
    assert await store.find_user(P, UserRef(username="@Ann_T")) == ("3", "New Ann")


async def test_notices_are_taken_once_sent(store: Store) -> None:
    await store.add_notice(KEY, "m1", "first", NOW, user_id="ann")
    await store.add_notice(DISCORD, None, "elsewhere", NOW)
    await store.add_notice(KEY, None, "second", NOW)
    pending = await store.pending_notices(P)
    assert [(n.key, n.reply_to, n.text) for n in pending] == [(KEY, "m1", "first"), (KEY, None, "second")]
    await store.notice_sent(pending[0].id, NOW)
    assert [n.text for n in await store.pending_notices(P)] == ["second"]
    assert [n.text for n in await store.pending_notices(Platform.DISCORD)] == ["elsewhere"]


async def test_inbox_keeps_order_ignores_repeats_and_expires(store: Store) -> None:
    await store.inbox_put(P, [("u1", "{1}"), ("u2", "{2}")], NOW - timedelta(hours=25))
    await store.inbox_put(P, [("u3", "{3}"), ("u4", "{4}")], NOW - timedelta(hours=1))
    await store.inbox_put(P, [("u3", "changed"), ("u5", "{5}")], NOW)
    await store.inbox_put(Platform.DISCORD, [("u3", "{d}")], NOW)
    await store.inbox_put(P, [], NOW)
    await store.inbox_done(P, "u4")
    assert await store.inbox_pending(P, NOW) == [InboxItem("u3", "{3}"), InboxItem("u5", "{5}")]
    assert await store.inbox_pending(Platform.DISCORD, NOW) == [InboxItem("u3", "{d}")]
    await store.inbox_put(P, [("u1", "{again}")], NOW)  # expired rows are gone: a new key again
    assert [i.idem_key for i in await store.inbox_pending(P, NOW)] == ["u3", "u5", "u1"]


async def _delivered(
    store: Store, user: str, cost: int, usd: float, key: ChannelKey = KEY, when: datetime = NOW
) -> int:
    made = await store.create_round(new_round(user, key=key, spec=ImageSpec(quality=Quality.HIGH)), when)
    await store.reserve(reservation(made.id, cost, now=when, est_usd=usd, default_daily=100))
    await store.deliver(made.id, key, [f"msg-{made.id}"], Facts(est_usd=usd), when)
    return made.id


async def test_usage_reports(store: Store) -> None:
    await _delivered(store, "ann", 4, 0.25)
    await _delivered(store, "ann", 1, 0.05)
    await _delivered(store, "bob", 6, 0.5)
    await _delivered(store, "bob", 1, 0.1, when=NOW - timedelta(days=40))  # last month
    await _delivered(store, "cat", 2, 0.1, key=DISCORD)
    failed = await store.create_round(new_round("ann"), NOW)
    await store.reserve(reservation(failed.id, 3, est_usd=0.2, default_daily=100))
    await store.transition(failed.id, RoundState.RUNNING, NOW)
    await store.finish(failed.id, RoundState.FAILED, "provider", NOW)
    month = TODAY[:8] + "01"

    ann = await store.usage_totals(P, C, TODAY, "ann")
    assert (ann.images, ann.credits) == (2, 5)
    assert ann.usd == pytest.approx(0.5)  # the failed round reached the provider: its estimate counts
    everyone = await store.usage_totals(P, C, month)
    assert (everyone.images, everyone.credits) == (3, 11)
    assert everyone.usd == pytest.approx(1.0)

    top = await store.top_users(P, C, month, 5)
    assert [(t.user_id, t.name, t.images, t.credits) for t in top] == [("bob", "Bob", 1, 6), ("ann", "Ann", 2, 5)]
    assert len(await store.top_users(P, C, month, 1)) == 1

    rows = await store.community_usage(NOW)
    figures = [
        (r.platform, r.community, r.today_images, r.today_credits, r.month_images, r.month_credits) for r in rows
    ]
    assert figures == [
        ("telegram", C, 3, 11, 3, 11),
        ("discord", DISCORD.community, 1, 2, 1, 2),
    ]
    assert rows[0].month_usd == pytest.approx(1.0)
    assert [r.community for r in await store.community_usage(NOW, DISCORD.community)] == [DISCORD.community]


async def test_forget_user(store: Store) -> None:
    await store.remember_user(P, "ann", "ann", "Ann", NOW)
    own = await store.create_round(new_round("ann", prompt="my secret   garden", input_shas=("in1",)), NOW)
    await store.reserve(reservation(own.id, 2))
    await store.deliver(
        own.id, KEY, ["m1"], Facts(image_sha="img1", mime="image/webp", response_id="resp_a", revised_prompt="x"), NOW
    )
    reroll = await store.create_round(new_round("bob", prompt="my secret   garden", kind=RoundKind.REROLL), NOW)
    await store.deliver(reroll.id, KEY, ["m2"], Facts(image_sha="img2", response_id="resp_b"), NOW)
    shared = await store.create_round(new_round("cat", prompt="cat's", input_shas=("in2",)), NOW)
    await store.deliver(shared.id, KEY, ["m3"], Facts(image_sha="img3"), NOW)
    second = await store.create_round(new_round("ann", prompt="edit", kind=RoundKind.EDIT, input_shas=("in2",)), NOW)
    await store.add_notice(KEY, None, "Round #1 (“my secret garden”) was interrupted", NOW, user_id="ann")
    await store.add_notice(KEY, None, "Round #9 (“my secret garden”) legacy notice", NOW)
    await store.add_notice(KEY, None, "Round #3 (“cat's”) was interrupted", NOW, user_id="cat")

    forgotten = await store.forget_user(P, "ann")

    assert forgotten.rounds == 2
    assert sorted(forgotten.images) == [("img1", "image/webp"), ("in1", "image/png")]  # in2 is cat's too
    assert forgotten.response_ids == ["resp_a", "resp_b"]  # bob's reroll holds ann's prompt at the provider
    for round_id in (own.id, second.id):
        got = await store.get_round(round_id)
        assert got is not None
        assert (got.prompt, got.user_name, got.image_sha, got.input_shas) == ("[deleted]", "", None, ())
        assert (got.response_id, got.revised_prompt) == (None, None)
    derived = await store.get_round(reroll.id)
    assert derived is not None
    assert (derived.prompt, derived.response_id, derived.image_sha) == ("[deleted]", None, "img2")
    kept = await store.get_round(shared.id)
    assert kept is not None and (kept.prompt, kept.input_shas) == ("cat's", ("in2",))
    assert [n.text for n in await store.pending_notices(P)] == ["Round #3 (“cat's”) was interrupted"]
    assert await store.find_user(P, UserRef(username="ann")) is None
    assert (await store.balance(P, C, "ann", TODAY, 10)).used == 2  # the ledger keeps its amounts
    assert (await store.get_round(own.id)) == await store.round_by_message(KEY, "m1")


async def test_yesterday_is_not_today(store: Store) -> None:
    await _delivered(store, "ann", 3, 0.1, when=YESTERDAY_NOON)
    assert (await store.usage_totals(P, C, TODAY, "ann")).images == 0
    assert await store.spend_on(TODAY) == 0
    assert (await store.community_usage(NOW))[0].today_images == 0
