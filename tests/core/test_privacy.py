"""`easel forget`: a user's prompts, names and images are erased; the ledger's totals stay exact."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from bots.process.app import Core
from core.events import Actor, ChannelKey, Platform, RoundRequest
from core.records import Balance, day_of
from tests.fakes.recording_view import RecordingView

KEY = ChannelKey(Platform.TELEGRAM, "-5", "-5")
ANN = Actor(Platform.TELEGRAM, "11", "Ann", username="ann")
BOB = Actor(Platform.TELEGRAM, "22", "Bob", username="bob")
MARKER = "zebra-marker-7731"


async def test_forget_erases_prompts_and_images_but_keeps_totals(core: Core) -> None:
    views = []
    for i, actor in enumerate([ANN, ANN, BOB]):
        view = RecordingView()
        prompt = f"{MARKER} {i}" if actor is ANN else "bob's own"
        await core.rounds.submit(RoundRequest(key=KEY, actor=actor, prompt=prompt, idempotency_key=f"k{i}"), view)
        views.append(view)
    before = await _balance(core)
    forgotten = await core.store.forget_user(Platform.TELEGRAM, ANN.user_id)
    await core.store.checkpoint()
    for sha, mime in forgotten.images:
        core.cache.delete(sha, mime)

    assert forgotten.rounds == 2 and len(forgotten.images) == 2
    after = await _balance(core)
    assert (after.used, after.left) == (before.used, before.left) and after.used > 0
    db_bytes = core.settings.db_path.read_bytes()
    wal = core.settings.db_path.with_name("easel.db-wal")
    assert MARKER.encode() not in db_bytes and (not wal.exists() or MARKER.encode() not in wal.read_bytes())
    for view in views[:2]:
        assert view.result is not None and view.result.image not in _cache_files(core)
    assert views[2].result is not None and views[2].result.image in _cache_files(core)  # Bob's stays
    with sqlite3.connect(core.settings.db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM users WHERE user_id = ?", (ANN.user_id,)).fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM rounds WHERE prompt = 'bob''s own'").fetchone()[0] == 1


async def _balance(core: Core) -> Balance:
    day = day_of(datetime.now(UTC))
    return await core.store.balance(KEY.platform, KEY.community, ANN.user_id, day, core.settings.daily_credits)


def _cache_files(core: Core) -> list[bytes]:
    return [p.read_bytes() for p in core.cache.root.glob("*/*") if p.is_file()]
