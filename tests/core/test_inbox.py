"""The durable inbox (core.inbox, Studio.inbox_*): a batch is recorded in one transaction, known keys are left
alone, handled rows go, pending rows come back oldest first, and rows older than a day are dropped."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bots.process.app import Core
from core import inbox
from core.events import Platform
from core.store.sqlite import Store

T = TypeVar("T")
TG, DC = Platform.TELEGRAM, Platform.DISCORD
NOON = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


class CountingStore(Store):
    """Counts write transactions (our own seam: Store.write)."""

    writes = 0

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self.writes += 1
        return await super().write(fn)


async def test_put_pending_done_round_trip(tmp_path: Path) -> None:
    async with CountingStore(tmp_path / "e.db") as store:
        await inbox.put(store, TG, [("7", '{"update_id": 7}'), ("8", '{"update_id": 8}')], NOON)
        assert store.writes == 1  # the whole batch in one transaction
        await inbox.put(store, TG, [("9", '{"update_id": 9}')], NOON + timedelta(seconds=1))
        await inbox.put(store, DC, [("7", '{"other": "platform"}')], NOON)
        # A key already recorded is left alone (a redelivered update does not replace or duplicate it).
        await inbox.put(store, TG, [("7", '{"update_id": 7, "changed": true}')], NOON + timedelta(seconds=2))
        later = NOON + timedelta(minutes=1)
        assert await inbox.pending(store, TG, later) == ['{"update_id": 7}', '{"update_id": 8}', '{"update_id": 9}']
        await inbox.done(store, TG, "8")
        await inbox.done(store, TG, "8")  # twice: nothing left to delete, no error
        await inbox.done(store, TG, "unknown")
        assert await inbox.pending(store, TG, later) == ['{"update_id": 7}', '{"update_id": 9}']
        assert await inbox.pending(store, DC, later) == ['{"other": "platform"}']
        writes = store.writes
        await inbox.put(store, TG, [], later)
        assert store.writes == writes  # an empty batch writes nothing


async def test_a_failing_batch_records_nothing(tmp_path: Path) -> None:
    async with Store(tmp_path / "e.db") as store:
        bad: list[tuple[str, Any]] = [("1", '{"update_id": 1}'), ("2", object())]  # the 2nd cannot be bound
        with pytest.raises(sqlite3.Error):
            await inbox.put(store, TG, bad, NOON)
        assert await inbox.pending(store, TG, NOON) == []  # the first row was rolled back with it


async def test_rows_older_than_a_day_are_dropped(tmp_path: Path) -> None:
    async with Store(tmp_path / "e.db") as store:
        await inbox.put(store, TG, [("old", "a")], NOON)
        await inbox.put(store, TG, [("new", "b")], NOON + timedelta(hours=2))
        assert await inbox.pending(store, TG, NOON + timedelta(hours=24)) == ["a", "b"]  # exactly a day: kept
        assert await inbox.pending(store, TG, NOON + timedelta(hours=25)) == ["b"]
        count = await store.read(lambda c: c.execute("SELECT COUNT(*) FROM inbox").fetchone()[0])
        assert count == 1  # dropped from the database, not only from the answer


async def test_studio_inbox_methods(core: Core) -> None:
    studio = core.studio
    await studio.inbox_put(TG, [("41", '{"update_id": 41}'), ("42", '{"update_id": 42}')])
    await studio.inbox_done(TG, "41")
    assert await studio.inbox_pending(TG) == ['{"update_id": 42}']
    studio.clock = lambda: datetime.now(UTC) + timedelta(days=2)  # two days later: expired
    assert await studio.inbox_pending(TG) == []
