"""The ledger's truth (issue 11): an image that reached the chat is charged once, whatever fails afterwards;
an upload that fails is refunded; a chat that cannot show its queue position never stalls the queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bots.process.app import Core, open_core
from bots.process.config import Settings
from core.events import Actor, ChannelKey, Platform, RoundRequest
from core.records import Facts, RoundState, day_of
from core.store.sqlite import SqliteStore
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.recording_view import RecordingView

MakeSettings = Callable[..., Settings]
KEY = ChannelKey(Platform.TELEGRAM, "-1001", "-1001")
ALICE = Actor(Platform.TELEGRAM, "1", "Alice", username="alice")
BOB = Actor(Platform.TELEGRAM, "2", "Bob", username="bob")
WAIT = 10.0


async def used(core: Core, actor: Actor = ALICE) -> int:
    day = day_of(datetime.now(UTC))
    balance = await core.store.balance(KEY.platform, KEY.community, actor.user_id, day, 10)
    return balance.used


async def settled(core: Core, view: RecordingView) -> RoundState:
    assert view.info is not None
    async with asyncio.timeout(WAIT):
        while True:
            found = await core.store.get_round(view.info.round_id)
            assert found is not None
            if not found.state.is_open:
                return found.state
            await asyncio.sleep(0.005)


class BrokenImages:
    """An image store whose writes fail (a full disk) after the chat already shows the image."""

    def __init__(self) -> None:
        self.writes = 0

    def put(self, data: bytes, mime: str) -> str:
        self.writes += 1
        raise OSError("No space left on device")

    def get(self, sha: str, mime: str) -> bytes | None:
        return None

    def delete(self, sha: str, mime: str) -> None:
        return None

    def prune(self) -> None:
        return None


async def test_a_failure_after_delivery_never_refunds(make_settings: MakeSettings, provider: FakeProvider) -> None:
    async with open_core(make_settings(), provider=provider) as core:
        broken = BrokenImages()
        object.__setattr__(core.rounds.deps, "images", broken)  # the store's write fails after the upload
        view = RecordingView()
        await asyncio.wait_for(core.rounds.submit(RoundRequest(KEY, ALICE, "a red fox", "k1"), view), WAIT)
        assert view.result is not None and view.refusals == []  # shown, and never replaced by an apology
        assert broken.writes == 1
        assert await settled(core, view) is RoundState.DELIVERED
        assert await used(core) == 1  # charged once


async def test_a_failed_upload_is_refunded_and_told(make_settings: MakeSettings) -> None:
    """Decided: previews are not the image. If the final upload fails, the image never reached the chat, so
    the round is refunded and the user gets the apology (documented in docs/operations.md)."""
    provider = FakeProvider(partials=2)
    async with open_core(make_settings(), provider=provider) as core:
        view = RecordingView(fail_delivery=RuntimeError("upload refused by the platform"))
        await asyncio.wait_for(core.rounds.submit(RoundRequest(KEY, ALICE, "a red fox", "k1"), view), WAIT)
        assert view.result is None and view.refusal is not None and view.refusal.reason == "error"
        assert await settled(core, view) is RoundState.FAILED
        assert await used(core) == 0


class StuckPositionView(RecordingView):
    """A chat under a flood hold: telling this user their queue position never finishes."""

    async def queued(self, position: int) -> None:
        self.positions.append(position)
        await asyncio.Event().wait()


async def test_a_flood_held_chat_does_not_stall_the_queue(make_settings: MakeSettings) -> None:
    provider = FakeProvider(gate=asyncio.Event())
    async with open_core(make_settings(EASEL_PROVIDER_CONCURRENCY=1), provider=provider) as core:
        first = RecordingView()
        running = asyncio.create_task(core.rounds.submit(RoundRequest(KEY, ALICE, "first", "k1"), first))
        async with asyncio.timeout(WAIT):
            while len(provider.jobs) < 1:
                await asyncio.sleep(0.005)
        stuck = StuckPositionView()
        waiting = asyncio.create_task(core.rounds.submit(RoundRequest(KEY, BOB, "second", "k2"), stuck))
        async with asyncio.timeout(WAIT):
            while not stuck.positions:
                await asyncio.sleep(0.005)
        assert provider.gate is not None
        provider.gate.set()  # the slot frees while Bob's position report hangs
        await asyncio.wait_for(asyncio.gather(running, waiting), WAIT)
        assert first.result is not None and stuck.result is not None
        assert len(provider.jobs) == 2


class SlowCommit(SqliteStore):
    """The real store, whose "delivered" commit waits for the test (a busy disk, a saturated writer)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()

    async def deliver(
        self, round_id: int, key: ChannelKey, message_ids: Sequence[str], facts: Facts, now: datetime
    ) -> None:
        await self.gate.wait()
        await super().deliver(round_id, key, message_ids, facts, now)


async def test_the_per_user_cap_counts_a_round_only_until_its_image_is_shown(make_settings: MakeSettings) -> None:
    settings = make_settings(EASEL_USER_CONCURRENCY=1)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = SlowCommit(settings.db_path)
    async with store, open_core(settings, provider=FakeProvider(), store=store) as core:
        first, second = RecordingView(), RecordingView()
        running = asyncio.create_task(core.rounds.submit(RoundRequest(KEY, ALICE, "first", "k1"), first))
        await asyncio.wait_for(first.finished.wait(), WAIT)  # shown in the chat; its commit still waits
        assert first.result is not None and not running.done()
        also = asyncio.create_task(core.rounds.submit(RoundRequest(KEY, ALICE, "second", "k2"), second))
        await asyncio.wait_for(second.finished.wait(), WAIT)
        assert second.refusal is None, second.refusal  # not "you already have 1 image in progress"
        assert second.result is not None
        store.gate.set()
        await asyncio.wait_for(asyncio.gather(running, also), WAIT)
