"""`backup_database`: a consistent online copy of a live WAL database (F-16, T12)."""

from __future__ import annotations

import contextlib
import sqlite3
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bots.process.backup import backup_database, check_integrity
from core.errors import StoreError


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _make_ledger(path: Path, rows: int = 2000) -> None:
    with contextlib.closing(_connect(path)) as conn:
        conn.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, user TEXT, amount INTEGER, note TEXT)")
        conn.execute("CREATE INDEX ledger_user ON ledger(user)")
        conn.execute("CREATE TABLE totals (id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL)")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO ledger (user, amount, note) VALUES (?, ?, ?)",
            ((f"u{i % 97}", 1 + i % 5, "x" * 200) for i in range(rows)),
        )
        conn.execute("INSERT INTO totals VALUES (1, (SELECT SUM(amount) FROM ledger))")
        conn.execute("COMMIT")


@dataclass
class Writer:
    """Commits ledger rows and the running total in one transaction each, until stopped."""

    path: Path
    committed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    progress: threading.Condition = field(default_factory=threading.Condition)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with contextlib.closing(_connect(self.path)) as conn:
                while not self.stop.is_set():
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("INSERT INTO ledger (user, amount, note) VALUES ('w', 3, 'live')")
                    conn.execute("UPDATE totals SET total = total + 3")
                    conn.execute("COMMIT")
                    with self.progress:
                        self.committed += 1
                        self.progress.notify_all()
        except BaseException as exc:
            self.error = exc
            with self.progress:
                self.progress.notify_all()

    def wait_for(self, count: int) -> int:
        with self.progress:
            assert self.progress.wait_for(lambda: self.committed >= count or self.error, timeout=10)
        assert self.error is None, self.error
        return self.committed


@pytest.fixture
def live_db(tmp_path: Path) -> Iterator[tuple[Path, Writer]]:
    path = tmp_path / "easel.db"
    _make_ledger(path)
    writer = Writer(path)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        yield path, writer
    finally:
        writer.stop.set()
        thread.join(10)
    assert writer.error is None, writer.error


def test_backup_of_a_live_database_is_consistent(live_db: tuple[Path, Writer], tmp_path: Path) -> None:
    path, writer = live_db
    before = writer.wait_for(20)  # the writer is really running
    dest = tmp_path / "backups" / "easel-backup.db"
    backup_database(path, dest)
    after = writer.wait_for(before + 5)  # and kept committing: the backup never blocked it for good

    check_integrity(dest)
    with contextlib.closing(sqlite3.connect(dest)) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        live_rows = copy.execute("SELECT COUNT(*) FROM ledger WHERE note = 'live'").fetchone()[0]
        ledger_sum, total = copy.execute(
            "SELECT (SELECT SUM(amount) FROM ledger), (SELECT total FROM totals)"
        ).fetchone()
    assert before <= live_rows <= after  # every row committed before the backup is in it
    assert ledger_sum == total  # one snapshot: no transaction half in the copy
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert sorted(p.name for p in dest.parent.iterdir()) == ["easel-backup.db"]  # no -wal, no partial


def test_refuses_to_overwrite_unless_forced(live_db: tuple[Path, Writer], tmp_path: Path) -> None:
    path, writer = live_db
    dest = tmp_path / "copy.db"
    dest.write_bytes(b"an older backup")
    with pytest.raises(StoreError, match="already exists"):
        backup_database(path, dest)
    assert dest.read_bytes() == b"an older backup"
    writer.wait_for(1)
    backup_database(path, dest, force=True)
    check_integrity(dest)


def test_refuses_the_live_database_and_a_missing_source(tmp_path: Path) -> None:
    path = tmp_path / "easel.db"
    _make_ledger(path, rows=10)
    with pytest.raises(StoreError, match="live database"):
        backup_database(path, tmp_path / "." / "easel.db", force=True)
    with pytest.raises(StoreError, match="no database"):
        backup_database(tmp_path / "missing.db", tmp_path / "copy.db")
    check_integrity(path)


def test_a_corrupt_database_fails_the_check_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "easel.db"
    _make_ledger(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'ledger_user'").fetchone()[0]
    with path.open("r+b") as raw:  # scribble over the index's root page
        raw.seek((root - 1) * page_size)
        raw.write(b"\x00" * page_size)
    dest = tmp_path / "out" / "copy.db"
    with pytest.raises(StoreError, match=r"failed the integrity check .*malformed"):
        backup_database(path, dest)
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(StoreError, match="failed the integrity check"):
        check_integrity(path)


def test_a_directory_gets_a_dated_file(live_db: tuple[Path, Writer], tmp_path: Path) -> None:
    from datetime import UTC, datetime

    path, _ = live_db
    folder = tmp_path / "backups"
    folder.mkdir()
    moment = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    written = backup_database(path, folder, now=moment)
    assert written == folder / "easel-20260304-050607.db"
    check_integrity(written)
    later = backup_database(path, folder, now=moment.replace(second=8))
    assert later != written and sorted(p.name for p in folder.iterdir()) == [written.name, later.name]
    with pytest.raises(StoreError, match="already exists"):
        backup_database(path, folder, now=moment)  # the same second: never overwritten
