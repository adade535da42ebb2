"""A consistent copy of a live SQLite database (`easel db backup`), safe while Easel writes to it.

SQLite's online backup API copies every page inside one read transaction, so the copy is the database as
of one commit. The copy is written beside the destination, private (0600: it holds prompts and user ids),
checked with `PRAGMA integrity_check`, fsynced, and only then linked into place (never over an existing file
unless `force`).

Restore: stop Easel, copy the backup over `easel.db`, delete `easel.db-wal` and `easel.db-shm`, start Easel.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from core.errors import StoreError


def backup_connection(source: sqlite3.Connection, source_path: Path, dest: Path, *, force: bool = False) -> None:
    """Copy the database open on `source` (no transaction open on it) to `dest`."""
    if dest.exists() and not force:
        raise StoreError(f"{dest} already exists; choose another path or pass --force")
    if dest.resolve() == source_path.resolve():
        raise StoreError("the backup path is the live database itself")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {dest.parent}: {exc.strerror or exc}") from None
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    _remove(partial)
    try:
        _copy(source, partial)
        problems = integrity_problems(partial)
        if problems:
            raise StoreError(
                f"the copy of {source_path} failed the integrity check ({'; '.join(problems[:5])}): the live "
                "database itself is probably damaged; keep your older backups"
            )
        _fsync(partial)
        try:
            if force:
                partial.replace(dest)
            else:
                os.link(partial, dest)  # fails if dest appeared meanwhile: never overwrite without force
        except FileExistsError:
            raise StoreError(f"{dest} already exists; choose another path or pass --force") from None
        except OSError as exc:
            raise StoreError(f"could not write {dest}: {exc.strerror or exc}") from None
        _fsync_dir(dest.parent)
    finally:
        _remove(partial)


def backup_file(db_path: Path, dest: Path, *, force: bool = False) -> None:
    """Copy the database file at `db_path` (read-only; for a process that does not hold the store open)."""
    if not db_path.is_file():
        raise StoreError(f"no database at {db_path}")
    try:
        source = sqlite3.connect(_ro_uri(db_path), uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"could not open {db_path}: {exc}") from None
    with contextlib.closing(source):
        backup_connection(source, db_path, dest, force=force)


def integrity_problems(path: Path) -> list[str]:
    """What `PRAGMA integrity_check` finds wrong (empty when the database is sound), read-only."""
    try:
        with contextlib.closing(sqlite3.connect(_ro_uri(path), uri=True)) as conn:
            rows = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(20)")]
    except sqlite3.Error as exc:  # damage bad enough that the check itself cannot run
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def _copy(source: sqlite3.Connection, target: Path) -> None:
    try:
        # Created private before any page is written.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with contextlib.closing(sqlite3.connect(target, isolation_level=None)) as dst:
            source.backup(dst)  # all pages in one step: one snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"could not back up the database to {target.parent}: {exc}") from None


def _ro_uri(path: Path) -> str:
    return f"{path.resolve().as_uri()}?mode=ro"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        _fsync(path)


def _remove(path: Path) -> None:
    for leftover in (path, *(path.with_name(path.name + tail) for tail in ("-journal", "-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
