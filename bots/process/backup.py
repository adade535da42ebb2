"""`easel db backup PATH`: a consistent copy of the live database, safe while Easel writes to it.

The copy itself is the store's (core/store/backup.py: SQLite's online backup API, read-only on the live
file, private, integrity-checked, fsynced, never over an existing file unless forced). This module decides
where it goes: PATH itself, or, when PATH is an existing directory, a dated file inside it
(`easel-YYYYmmdd-HHMMSS.db`, UTC), so a timer can write into one folder without overwriting.

Restore (see README, "Backups and restore"): stop Easel, copy the backup over `easel.db`, delete
`easel.db-wal` and `easel.db-shm`, start Easel.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from core.errors import StoreError
from core.store.backup import backup_file, integrity_problems

DATED = "easel-%Y%m%d-%H%M%S.db"


def backup_target(dest: Path, now: datetime | None = None) -> Path:
    """`dest`, or a dated file inside it when `dest` is an existing directory."""
    if dest.is_dir():
        return dest / (now or datetime.now(UTC)).strftime(DATED)
    return dest


def backup_database(db_path: Path, dest: Path, *, force: bool = False, now: datetime | None = None) -> Path:
    """Copy the database at `db_path` to `dest` (or a dated file inside it); returns the file written.
    Raises `StoreError` when the source cannot be read, the target exists (unless `force`), or the copy
    fails its integrity check."""
    target = backup_target(dest, now)
    backup_file(db_path, target, force=force)
    return target


def check_integrity(path: Path) -> None:
    """Raise `StoreError` unless the database passes its integrity check."""
    problems = integrity_problems(path)
    if problems:
        raise StoreError(f"{path} failed the integrity check: {'; '.join(problems[:5])}")
