"""The ledger under concurrency and redelivery, through the round service and the desk on the real SQLite
store: a quota is never overspent, a redelivered request or command is applied once. (The store alone, both
backends: tests/store/test_ledger_property.py and test_contract_ledger.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from bots.process.app import Core, open_core
from bots.process.config import Settings
from core.errors import DuplicateRequest, NotModerator, SafetyRefusal
from core.events import Actor, ChannelKey, DeskCommand, Platform, RoundRequest, UserRef, Verb
from core.records import Balance, RoundState, day_of
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.recording_view import RecordingView

MakeSettings = Callable[..., Settings]
KEY = ChannelKey(Platform.TELEGRAM, "-100", "-100")
ALICE = Actor(Platform.TELEGRAM, "1", "Alice", username="alice")
MOD = Actor(Platform.TELEGRAM, "9", "Mod", username="mod", is_moderator=True)
PLAIN = Actor(Platform.TELEGRAM, "8", "Plain", username="plain")


def request(idem: str, prompt: str = "a fox") -> RoundRequest:
    return RoundRequest(key=KEY, actor=ALICE, prompt=prompt, idempotency_key=idem)


@asynccontextmanager
async def built(settings: Settings, provider: FakeProvider | None = None) -> AsyncIterator[Core]:
    async with open_core(settings, provider=provider or FakeProvider()) as core:
        yield core


async def balance(core: Core, user_id: str = ALICE.user_id) -> Balance:
    day = day_of(datetime.now(UTC))
    return await core.store.balance(KEY.platform, KEY.community, user_id, day, core.settings.daily_credits)


async def states(core: Core, views: list[RecordingView]) -> Counter[RoundState]:
    found: Counter[RoundState] = Counter()
    for view in views:
        if view.info is not None:
            item = await core.store.get_round(view.info.round_id)
            assert item is not None
            found[item.state] += 1
    return found


async def test_200_concurrent_rounds_against_50_credits(make_settings: MakeSettings) -> None:
    """The per-user cap and rate are lifted (they would answer first) so that the quota alone decides."""
    settings = dataclasses.replace(make_settings(EASEL_DAILY_CREDITS=50, EASEL_USER_RATE=10000), user_concurrency=1000)
    provider = FakeProvider()
    async with built(settings, provider) as core:
        views = [RecordingView() for _ in range(200)]
        await asyncio.gather(*(core.rounds.submit(request(f"tg:-100:{i}"), v) for i, v in enumerate(views)))
        assert sum(v.result is not None for v in views) == 50
        assert Counter(v.refusal.reason for v in views if v.refusal) == {"over_quota": 150}
        assert len(provider.jobs) == 50
        assert (await balance(core)).used == 50 and (await balance(core)).left == 0
        assert await states(core, views) == {RoundState.DELIVERED: 50, RoundState.REFUSED: 150}


KEY_SHAPES = ["tg:-100123:42", "tg:u:777", "tg:cb:4242", "dc:i:123456789", "dc:m:987654321"]


async def assert_one_round_one_charge(core: Core, provider: FakeProvider, views: list[RecordingView]) -> None:
    assert sum(1 for v in views if v.events) == 1, [v.events for v in views]
    assert sum(1 for v in views if v.result) == 1
    assert len(provider.jobs) == 1
    assert await core.store.get_round(2) is None  # one round row
    assert (await balance(core)).used == 1


@pytest.mark.parametrize("idem", KEY_SHAPES)
async def test_same_key_three_times_in_a_row(make_settings: MakeSettings, idem: str) -> None:
    provider = FakeProvider()
    async with built(make_settings(), provider) as core:
        views = [RecordingView() for _ in range(3)]
        for view in views:
            await core.rounds.submit(request(idem), view)
        await assert_one_round_one_charge(core, provider, views)


@pytest.mark.parametrize("idem", KEY_SHAPES)
async def test_same_key_three_times_at_once(make_settings: MakeSettings, idem: str) -> None:
    provider = FakeProvider()
    async with built(make_settings(), provider) as core:
        views = [RecordingView() for _ in range(3)]
        await asyncio.gather(*(core.rounds.submit(request(idem), v) for v in views))
        await assert_one_round_one_charge(core, provider, views)


async def test_redelivery_while_the_round_is_still_running(make_settings: MakeSettings) -> None:
    called = asyncio.Event()
    provider = FakeProvider(gate=asyncio.Event(), on_call=lambda job: called.set())
    async with built(make_settings(), provider) as core:
        first = RecordingView()
        task = asyncio.create_task(core.rounds.submit(request("dc:i:1"), first))
        await called.wait()
        copies = [RecordingView(), RecordingView()]
        for view in copies:
            await core.rounds.submit(request("dc:i:1"), view)  # returns at once: nothing to do
        assert provider.gate is not None
        provider.gate.set()
        await task
        await assert_one_round_one_charge(core, provider, [first, *copies])


async def test_redelivery_of_a_failed_round_does_not_rerun_it(make_settings: MakeSettings) -> None:
    provider = FakeProvider()
    provider.fail_next(SafetyRefusal("provider.safety.input"))
    async with built(make_settings(), provider) as core:
        views = [RecordingView() for _ in range(3)]
        for view in views:
            await core.rounds.submit(request("tg:-1:5"), view)
        assert views[0].refusal is not None and [v.events for v in views[1:]] == [[], []]
        assert len(provider.jobs) == 1
        assert await states(core, views[:1]) == {RoundState.FAILED: 1}
        assert (await balance(core)).used == 0


def command(verb: Verb, actor: Actor, idem: str, amount: int | None = None) -> DeskCommand:
    target = None if verb is Verb.DEFAULT else UserRef(username="alice")
    return DeskCommand(verb=verb, key=KEY, actor=actor, idempotency_key=idem, target=target, amount=amount)


async def test_grant_redelivered_three_times_is_applied_once(make_settings: MakeSettings) -> None:
    async with built(make_settings()) as core:
        await core.desk.seen(ALICE, KEY.community)
        await core.desk.run(command(Verb.GRANT, MOD, "tg:-100:9", 5))
        for _ in range(2):
            with pytest.raises(DuplicateRequest):  # a redelivery does nothing (the adapter answers nothing)
                await core.desk.run(command(Verb.GRANT, MOD, "tg:-100:9", 5))
        assert (await balance(core)).granted == 5


@pytest.mark.parametrize(
    ("verb", "amount"), [(Verb.GRANT, 5), (Verb.SET, 3), (Verb.DEFAULT, 2), (Verb.BAN, None), (Verb.UNBAN, None)]
)
async def test_non_moderator_is_refused_and_nothing_changes(
    make_settings: MakeSettings, verb: Verb, amount: int | None
) -> None:
    async with built(make_settings()) as core:
        await core.desk.seen(ALICE, KEY.community)
        before = await balance(core)
        answer = await core.desk.run(command(verb, PLAIN, "tg:-100:1", amount))
        assert answer.ephemeral and answer.text == NotModerator("desk.not_moderator").message
        assert await balance(core) == before
        # The same key from a moderator afterwards is a new command, not a duplicate of the refused one.
        assert not (await core.desk.run(command(verb, MOD, "tg:-100:1", amount))).ephemeral
