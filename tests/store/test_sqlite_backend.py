"""What only the SQLite backend does: migrating an old database, file modes, backups, the schema's own
guards (triggers), and group commit keeping each write's failure to itself."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import stat
from pathlib import Path

import pytest
import sqlite_utils

from core.errors import StoreError
from core.records import RoundState
from core.store.backup import integrity_problems
from core.store.migrations import MIGRATIONS
from core.store.sqlite import SqliteStore
from tests.store.support import KEY, NOW, TODAY, new_round, reservation

OLD_ROUND = (
    "INSERT INTO rounds (idem_key, platform, community, channel, number, user_id, kind, prompt, size, quality,"
    " cost, status, input_sha, day, created_at, updated_at) VALUES (?, 'telegram', '-100', '-100', ?, 'ann',"
    " 'generate', 'p', 'square', 'medium', 1, ?, ?, '2025-05-10', '2025-05-10T12:00:00+00:00',"
    " '2025-05-10T12:00:00+00:00')"
)


def _old_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        MIGRATIONS.apply(sqlite_utils.Database(conn), stop_before="m003_round_states")
        for number, status in enumerate(("pending", "reserved", "running", "generated", "delivered", "failed"), 1):
            conn.execute(OLD_ROUND, (f"k{number}", number, status, "sha" if number == 2 else None))
        conn.execute(
            "INSERT INTO ledger (round_id, platform, community, user_id, kind, amount, day, created_at) "
            "VALUES (2, 'telegram', '-100', 'ann', 'reserve', 1, '2025-05-10', '2025-05-10T12:00:00+00:00')"
        )


async def test_migrates_a_version_2_database(tmp_path: Path) -> None:
    path = tmp_path / "easel.db"
    _old_database(path)
    async with SqliteStore(path) as store:
        states = [(await store.round_by_number(KEY, n)) for n in range(1, 7)]
        assert [r.state for r in states if r] == [
            RoundState.REQUESTED,
            RoundState.QUEUED,
            RoundState.RUNNING,
            RoundState.DELIVERING,
            RoundState.DELIVERED,
            RoundState.FAILED,
        ]
        assert [r.input_shas for r in states if r][:2] == [(), ("sha",)]
        assert await store.finish(2, RoundState.FAILED, "interrupted", NOW) == 1
        assert (await store.balance(KEY.platform, KEY.community, "ann", TODAY, 10)).used == 0
        made = await store.create_round(new_round(), NOW)
        assert made.number == 7


async def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "easel.db"
    async with SqliteStore(path) as store:
        await store.create_round(new_round(), NOW)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for file in path.parent.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


async def test_backup_is_a_consistent_private_copy(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "easel.db") as store:
        made = await store.create_round(new_round(), NOW)
        target = tmp_path / "copies" / "b.db"
        await store.backup(target)
        with pytest.raises(StoreError):
            await store.backup(target)  # never overwritten
    assert integrity_problems(target) == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    async with SqliteStore(target) as copy:
        assert await copy.get_round(made.id) == made


async def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "easel.db"
    async with SqliteStore(path) as store:
        await store.create_round(new_round(), NOW)
    path.write_bytes(path.read_bytes()[:2048] + b"\x00garbage" * 512)
    with pytest.raises((StoreError, sqlite3.DatabaseError)):
        async with SqliteStore(path):
            pass


def _sql(path: Path, statement: str) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger SET amount = 0",
        "DELETE FROM ledger",
        "INSERT INTO ledger (round_id, platform, community, user_id, kind, amount, day, created_at) "
        "VALUES (1, 'telegram', '-100', 'ann', 'refund', 5, '2025-05-10', 'x')",
        "INSERT INTO ledger (round_id, platform, community, user_id, kind, amount, day, created_at) "
        "VALUES (1, 'telegram', '-100', 'ann', 'reserve', 1, '2025-05-10', 'x')",
        "INSERT INTO ledger (platform, community, user_id, kind, amount, day, created_at) "
        "VALUES ('telegram', '-100', 'ann', 'grant', -1, '2025-05-10', 'x')",
        "UPDATE rounds SET status = 'running' WHERE id = 2",
        "UPDATE rounds SET status = 'pending'",
    ],
)
async def test_the_schema_guards_the_ledger(tmp_path: Path, statement: str) -> None:
    path = tmp_path / "easel.db"
    async with SqliteStore(path) as store:
        first = await store.create_round(new_round(), NOW)
        await store.reserve(reservation(first.id, 2))
        second = await store.create_round(new_round(), NOW)
        await store.finish(second.id, RoundState.CANCELLED, "x", NOW)
    with pytest.raises(sqlite3.IntegrityError):
        _sql(path, statement)


async def test_group_commit_isolates_failures(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "easel.db") as store:
        made = [await store.create_round(new_round(f"u{i}"), NOW) for i in range(20)]
        results = await asyncio.gather(
            *(store.reserve(reservation(r.id, 11 if i % 2 else 1)) for i, r in enumerate(made)),
            return_exceptions=True,
        )
        assert [isinstance(r, Exception) for r in results] == [bool(i % 2) for i in range(20)]
        states = [(await store.get_round(r.id)) for r in made]
        assert [s.state for s in states if s] == [
            RoundState.REQUESTED if i % 2 else RoundState.QUEUED for i in range(20)
        ]
