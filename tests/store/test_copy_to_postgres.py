"""`easel db migrate --to URL`: a SQLite database copied into PostgreSQL reads back the same through the port,
and the copy verifies itself (row counts, ledger totals)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import StoreError
from core.events import Platform, UserRef
from core.records import Facts, ModVerb, RoundKind, RoundState
from core.store.copy import copy_sqlite_to
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore
from tests.store.support import DISCORD, KEY, NOW, TODAY, YESTERDAY_NOON, change, new_round, reservation


async def _fill(path: Path) -> list[int]:
    async with SqliteStore(path) as store:
        await store.remember_user(KEY.platform, "ann", "ann", "Ann", NOW)
        root = await store.create_round(new_round("ann", input_shas=("in1", "in2")), YESTERDAY_NOON)
        await store.reserve(reservation(root.id, 2, now=YESTERDAY_NOON))
        await store.deliver(root.id, KEY, ["m1", "m2"], Facts(image_sha="img", est_usd=0.1), YESTERDAY_NOON)
        edit = await store.create_round(new_round("bob", kind=RoundKind.EDIT, parent_id=root.id), NOW)
        await store.reserve(reservation(edit.id, 3))
        await store.record_facts(edit.id, Facts(progress_message="p1", stream_seq=3, background=True), NOW)
        await store.finish(edit.id, RoundState.FAILED, "provider", NOW)
        still = await store.create_round(new_round("cat", key=DISCORD, owner="w1"), NOW)
        await store.reserve(reservation(still.id, 1))
        await store.moderate(change(ModVerb.GRANT, "ann", 4))
        await store.moderate(change(ModVerb.SET_DEFAULT, None, 7))
        await store.moderate(change(ModVerb.BAN, "dan"))
        await store.moderate(change(ModVerb.LANGUAGE, None, text_value="zh"))
        await store.add_notice(KEY, "m1", "hello", NOW, user_id="ann")
        await store.inbox_put(Platform.TELEGRAM, [("u1", "{}")], NOW)
        return [root.id, edit.id, still.id]


async def test_copy_round_trips_through_the_port(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "easel.db"
    ids = await _fill(source)
    report = await copy_sqlite_to(source, pg_url)
    assert report.ok, report.problems
    assert report.counts["rounds"] == (3, 3)
    assert report.counts["ledger"] == (5, 5)
    assert report.ledger_users == 5

    async with SqliteStore(source) as old, PostgresStore(pg_url) as new:
        for round_id in ids:
            assert await new.get_round(round_id) == await old.get_round(round_id)
        assert await new.round_by_message(KEY, "p1") == await old.round_by_message(KEY, "p1")
        for user in ("ann", "bob", "dan"):
            for day in (TODAY, YESTERDAY_NOON.strftime("%Y-%m-%d")):
                assert await new.balance(KEY.platform, KEY.community, user, day, 10) == await old.balance(
                    KEY.platform, KEY.community, user, day, 10
                )
        assert await new.safety_salt() == await old.safety_salt()
        assert await new.community_language(KEY.platform, KEY.community) == "zh"
        assert await new.find_user(KEY.platform, UserRef(username="@Ann")) == ("ann", "Ann")
        assert await new.pending_notices(KEY.platform) == await old.pending_notices(KEY.platform)
        assert [r.id for r in await new.open_rounds("w1")] == [ids[2]]
        assert await new.usage_totals(KEY.platform, KEY.community, "2025-05-01") == await old.usage_totals(
            KEY.platform, KEY.community, "2025-05-01"
        )
        made = await new.create_round(new_round("eve"), NOW)  # identities continue after the copied ids
        assert made.id > max(ids) and made.number == 3


async def test_copy_refuses_a_target_with_data(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "easel.db"
    await _fill(source)
    async with PostgresStore(pg_url) as target:
        await target.create_round(new_round("zed"), NOW)
    with pytest.raises(StoreError, match="not empty"):
        await copy_sqlite_to(source, pg_url)
    with pytest.raises(StoreError, match="no database"):
        await copy_sqlite_to(tmp_path / "missing.db", pg_url)
