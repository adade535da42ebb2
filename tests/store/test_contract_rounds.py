"""Store contract: rounds (creation, numbering, lookups, states, delivery, workers)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import DuplicateRequest
from core.ports import Store
from core.records import Facts, RoundKind, RoundState
from core.spec import Background, ImageSpec, Quality, Shape
from tests.store.support import DISCORD, KEY, NOW, OTHER_CHANNEL, idem, new_round, reservation


async def test_create_round_records_everything(store: Store) -> None:
    spec = ImageSpec(Shape.WIDE, Quality.HIGH, Background.TRANSPARENT, references=3)
    made = await store.create_round(
        new_round("ann", spec=spec, input_shas=("a" * 64, "b" * 64), owner="w1", lang="zh"), NOW
    )
    assert made.number == 1
    assert made.state is RoundState.REQUESTED
    assert made.spec == spec
    assert made.input_shas == ("a" * 64, "b" * 64)
    assert (made.owner, made.lang, made.cost, made.key, made.user_name) == ("w1", "zh", 0, KEY, "Ann")
    assert made.created_at == NOW
    assert await store.get_round(made.id) == made


async def test_duplicate_idem_key_is_refused_and_writes_nothing(store: Store) -> None:
    await store.create_round(new_round(idem_key="same"), NOW)
    with pytest.raises(DuplicateRequest):
        await store.create_round(new_round("bob", idem_key="same"), NOW)
    assert await store.round_by_number(KEY, 2) is None


async def test_numbers_count_per_channel(store: Store) -> None:
    numbers = [(await store.create_round(new_round(key=k), NOW)).number for k in (KEY, KEY, DISCORD, KEY)]
    assert numbers == [1, 2, 1, 3]
    other = await store.create_round(new_round(key=OTHER_CHANNEL), NOW)  # same channel, another thread
    assert other.number == 4


async def test_refused_rounds_can_be_recorded_at_once(store: Store) -> None:
    made = await store.create_round(new_round(state=RoundState.REFUSED), NOW)
    assert made.state is RoundState.REFUSED
    assert await store.open_rounds() == []


async def test_lookups(store: Store) -> None:
    first = await store.create_round(new_round(), NOW)
    second = await store.create_round(new_round(key=DISCORD), NOW)
    assert await store.get_round(999) is None
    assert await store.round_by_number(KEY, 1) == first
    assert await store.round_by_number(DISCORD, 1) == second
    assert await store.round_by_number(KEY, 2) is None
    await store.attach_messages(first.id, KEY, ["m1", "m2"])
    assert (await store.round_by_message(KEY, "m2")) == first
    assert await store.round_by_message(KEY, "m3") is None
    assert await store.round_by_message(DISCORD, "m1") is None


async def test_progress_message_resolves_to_its_round(store: Store) -> None:
    made = await store.create_round(new_round(), NOW)
    await store.record_facts(made.id, Facts(progress_message="p1", stream_seq=4, background=True), NOW)
    found = await store.round_by_message(KEY, "p1")
    assert found is not None
    assert (found.id, found.progress_message, found.stream_seq, found.background) == (made.id, "p1", 4, True)


async def test_derived_rounds_are_rerolls_of_the_same_prompt(store: Store) -> None:
    root = await store.create_round(new_round("ann", prompt="a cat"), NOW)
    edit = await store.create_round(
        new_round("ann", prompt="make it blue", kind=RoundKind.EDIT, parent_id=root.id), NOW
    )
    reroll = await store.create_round(
        new_round("bob", prompt="make it blue", kind=RoundKind.REROLL, parent_id=root.id), NOW
    )
    await store.create_round(new_round("bob", prompt="other", kind=RoundKind.REROLL, parent_id=root.id), NOW)
    assert [r.id for r in await store.derived_rounds(edit.id)] == [reroll.id]
    assert await store.derived_rounds(reroll.id) == []


async def test_transitions_move_open_rounds_only(store: Store) -> None:
    made = await store.create_round(new_round(), NOW)
    await store.reserve(reservation(made.id))
    assert await store.transition(made.id, RoundState.RUNNING, NOW, Facts(response_id="resp_1"))
    got = await store.get_round(made.id)
    assert got is not None and (got.state, got.response_id) == (RoundState.RUNNING, "resp_1")
    assert await store.finish(made.id, RoundState.CANCELLED, "cancelled", NOW) == 1
    assert not await store.transition(made.id, RoundState.DELIVERING, NOW, Facts(image_sha="x"))
    got = await store.get_round(made.id)
    assert got is not None and (got.state, got.image_sha) == (RoundState.CANCELLED, None)
    assert not await store.transition(12345, RoundState.RUNNING, NOW)


async def test_finish_refunds_exactly_once(store: Store) -> None:
    made = await store.create_round(new_round(), NOW)
    await store.reserve(reservation(made.id, 3))
    assert (await store.balance(KEY.platform, KEY.community, "ann", "2025-05-10", 10)).left == 7
    assert await store.finish(made.id, RoundState.FAILED, "provider", NOW) == 3
    assert await store.finish(made.id, RoundState.FAILED, "provider", NOW) == 0
    assert await store.finish(made.id, RoundState.CANCELLED, "again", NOW) == 0
    got = await store.get_round(made.id)
    assert got is not None and (got.state, got.reason) == (RoundState.FAILED, "provider")
    assert (await store.balance(KEY.platform, KEY.community, "ann", "2025-05-10", 10)).left == 10


async def test_finish_without_reserve_refunds_nothing(store: Store) -> None:
    made = await store.create_round(new_round(), NOW)
    assert await store.finish(made.id, RoundState.REFUSED, "over_quota", NOW) == 0
    got = await store.get_round(made.id)
    assert got is not None and got.state is RoundState.REFUSED


async def test_delivered_is_charged_for_good(store: Store) -> None:
    made = await store.create_round(new_round(), NOW)
    await store.reserve(reservation(made.id, 2))
    await store.transition(made.id, RoundState.RUNNING, NOW)
    await store.transition(made.id, RoundState.DELIVERING, NOW, Facts(image_sha="f" * 64, mime="image/png"))
    await store.deliver(made.id, KEY, ["r1"], Facts(est_usd=0.05, response_id="resp_9"), NOW)
    assert await store.finish(made.id, RoundState.FAILED, "upload", NOW) == 0
    got = await store.get_round(made.id)
    assert got is not None
    assert (got.state, got.image_sha, got.response_id) == (RoundState.DELIVERED, "f" * 64, "resp_9")
    assert await store.round_by_message(KEY, "r1") == got
    assert not await store.transition(made.id, RoundState.RUNNING, NOW)
    assert (await store.balance(KEY.platform, KEY.community, "ann", "2025-05-10", 10)).used == 2
    assert await store.spend_on("2025-05-10") == pytest.approx(0.05)


async def test_open_rounds_by_owner(store: Store) -> None:
    a = await store.create_round(new_round(owner="w1"), NOW)
    b = await store.create_round(new_round(owner="w2"), NOW)
    c = await store.create_round(new_round(owner="w1"), NOW)
    await store.finish(c.id, RoundState.FAILED, "x", NOW)
    assert [r.id for r in await store.open_rounds()] == [a.id, b.id]
    assert [r.id for r in await store.open_rounds("w1")] == [a.id]


async def test_adopt_takes_only_rounds_of_gone_workers(store: Store) -> None:
    await store.heartbeat("live", NOW)
    await store.heartbeat("stale", NOW - timedelta(seconds=120))
    await store.heartbeat("me", NOW)
    live = await store.create_round(new_round(owner="live"), NOW)
    stale = await store.create_round(new_round(owner="stale"), NOW)
    vanished = await store.create_round(new_round(owner="vanished"), NOW)
    nobody = await store.create_round(new_round(owner=None), NOW)
    mine = await store.create_round(new_round(owner="me"), NOW)
    adopted = await store.adopt_rounds("me", NOW, stale_after=60)
    assert sorted(r.id for r in adopted) == sorted([stale.id, vanished.id, nobody.id])
    assert all(r.owner == "me" for r in adopted)
    kept = await store.get_round(live.id)
    assert kept is not None and kept.owner == "live"
    assert [r.id for r in await store.open_rounds("me")] == sorted([stale.id, vanished.id, nobody.id, mine.id])
    assert await store.adopt_rounds("me", NOW, stale_after=60) == []


async def test_retired_worker_rounds_are_adoptable_at_once(store: Store) -> None:
    await store.heartbeat("w1", NOW)
    made = await store.create_round(new_round(owner="w1"), NOW)
    assert await store.adopt_rounds("w2", NOW, stale_after=60) == []
    await store.heartbeat("w1", NOW + timedelta(seconds=50))
    assert await store.adopt_rounds("w2", NOW + timedelta(seconds=100), stale_after=60) == []
    await store.retire("w1")
    assert [r.id for r in await store.adopt_rounds("w2", NOW + timedelta(seconds=101), stale_after=60)] == [made.id]


async def test_idempotency_keys_are_global(store: Store) -> None:
    key = idem()
    await store.create_round(new_round(key=KEY, idem_key=key), NOW)
    with pytest.raises(DuplicateRequest):
        await store.create_round(new_round(key=DISCORD, idem_key=key), NOW)
