"""The durable inbox service (`core.inbox.Inbox`) as adapters reach it through `Core.services`: batches in,
handled items out, and expiry by the core's clock. The store's side (order, repeats ignored, per platform,
expiry, empty batches) is the contract suite's `tests/store/test_contract_misc.py::
test_inbox_keeps_order_ignores_repeats_and_expires`, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bots.process.app import open_core
from bots.process.config import Settings
from core.events import Platform
from tests.fakes.fake_provider import FakeProvider

TG, DC = Platform.TELEGRAM, Platform.DISCORD


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


async def test_put_done_pending_through_the_services(make_settings: Callable[..., Settings]) -> None:
    clock = FakeClock(datetime.now(UTC))
    async with open_core(make_settings(), provider=FakeProvider(), clock=clock) as core:
        inbox = core.services.inbox
        await inbox.put(TG, [("41", '{"update_id": 41}'), ("42", '{"update_id": 42}')])
        await inbox.put(TG, [("41", '{"update_id": 41, "changed": true}')])  # a redelivery changes nothing
        await inbox.put(DC, [("41", '{"other": "platform"}')])
        await inbox.put(TG, [])
        await inbox.done(TG, "41")
        await inbox.done(TG, "41")  # twice: nothing left, no error
        assert await inbox.pending(TG) == ['{"update_id": 42}']
        assert await inbox.pending(DC) == ['{"other": "platform"}']
        clock.now += timedelta(days=2)  # two days later: expired, never replayed
        assert await inbox.pending(TG) == []


async def test_pending_items_survive_a_restart(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    async with open_core(settings, provider=FakeProvider()) as core:
        await core.services.inbox.put(TG, [("7", '{"update_id": 7}')])
    async with open_core(settings, provider=FakeProvider()) as again:
        assert await again.services.inbox.pending(TG) == ['{"update_id": 7}']
