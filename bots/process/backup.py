"""`easel db backup`: a consistent copy of the live database, safe while Easel writes to it.

SQLite's online backup API copies every page inside one read transaction, so the copy is the database as
of one commit, and in WAL mode the writer is never blocked. The copy is written beside the destination,
private (0600: it holds prompts and user ids), checked with `PRAGMA integrity_check`, fsynced, and only then
moved into place.

Restore (see README, "Backups and restore"): stop Easel, copy the backup over `easel.db`, delete
`easel.db-wal` and `easel.db-shm`, start Easel.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from core.errors import StoreError


def backup_database(db_path: Path, dest: Path, *, force: bool = False) -> None:
    """Copy the database at `db_path` to `dest`. Refuses to overwrite `dest` unless `force`. Raises
    `StoreError` when the source cannot be read or the copy fails its integrity check."""
    if not db_path.is_file():
        raise StoreError(f"no database at {db_path}")
    if dest.exists() and not force:
        raise StoreError(f"{dest} already exists; choose another path or pass --force")
    if dest.resolve() == db_path.resolve():
        raise StoreError("the backup path is the live database itself")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {dest.parent}: {exc.strerror or exc}") from None
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    _remove(partial)
    try:
        _copy(db_path, partial)
        problems = integrity_problems(partial)
        if problems:
            raise StoreError(
                f"the copy of {db_path} failed the integrity check ({'; '.join(problems[:5])}): the live "
                "database itself is probably damaged; keep your older backups"
            )
        _fsync(partial)
        try:
            if force:
                partial.replace(dest)
            else:
                # link() fails if dest appeared meanwhile: never overwrite without --force, even in a race.
                os.link(partial, dest)
        except FileExistsError:
            raise StoreError(f"{dest} already exists; choose another path or pass --force") from None
        except OSError as exc:
            raise StoreError(f"could not write {dest}: {exc.strerror or exc}") from None
        _fsync_dir(dest.parent)
    finally:
        _remove(partial)


def check_integrity(path: Path) -> None:
    """Raise `StoreError` unless `PRAGMA integrity_check` says "ok"."""
    problems = integrity_problems(path)
    if problems:
        raise StoreError(f"{path} failed the integrity check: {'; '.join(problems[:5])}")


def integrity_problems(path: Path) -> list[str]:
    """What `PRAGMA integrity_check` finds wrong (empty when the database is sound), read-only."""
    try:
        with contextlib.closing(sqlite3.connect(_ro_uri(path), uri=True)) as conn:
            rows = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(20)")]
    except sqlite3.Error as exc:  # damage bad enough that the check itself cannot run
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def _copy(source: Path, target: Path) -> None:
    try:
        # Created private before any page is written: the copy holds prompts and user ids.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with (
            contextlib.closing(sqlite3.connect(_ro_uri(source), uri=True)) as src,
            contextlib.closing(sqlite3.connect(target, isolation_level=None)) as dst,
        ):
            src.backup(dst)  # all pages in one step: one snapshot, never restarted by a concurrent write
            # The copy inherits WAL mode from the source; make it a single self-contained file.
            dst.execute("PRAGMA journal_mode=DELETE")
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"could not back up {source} to {target.parent}: {exc}") from None


def _ro_uri(path: Path) -> str:
    # Read-only: a backup must never write to the live database (WAL readers need no write access to it).
    return f"{path.resolve().as_uri()}?mode=ro"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        _fsync(path)


def _remove(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal"),
                     path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
