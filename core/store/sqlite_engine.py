"""The SQLite engine under `SqliteStore`: one writer connection in one thread, a reader connection in another.

Every write runs on the writer thread inside `BEGIN IMMEDIATE ... COMMIT`, so a read-then-write (a quota
check) can never race another writer. Writes that queue up while the writer is busy share one transaction
(group commit: one fsync), each in its own savepoint, so one write's failure never touches another's. Reads
run on a second thread with their own connection; WAL lets them proceed while the writer works. Nothing
here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import sqlite_utils

from core.errors import StoreError
from core.store.migrations import MIGRATIONS

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_BATCH = 256  # writes sharing one commit at most
DIR_MODE = 0o700  # the data directory holds prompts and user ids
FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class _Write(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():  # the caller went away; the write itself stands (or failed) all the same
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are opened explicitly."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # the ledger must survive power loss, not only a crash
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA secure_delete=ON")  # `easel forget` must not leave prompts in free pages
    return conn


def prepare_files(path: Path) -> None:
    """Create the data directory 0700 and the database file 0600 (before SQLite creates it with the umask's
    mode); tighten the modes of files that exist already."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=DIR_MODE)
        os.chmod(path.parent, DIR_MODE)  # mkdir's mode is filtered by the umask
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    tighten(path)


def tighten(path: Path) -> None:
    """SQLite gives -wal and -shm the database file's mode; make sure of it all the same."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                os.chmod(file, FILE_MODE)


class Engine:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-db-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-db-reader")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._pending: deque[_Write[Any]] = deque()
        self._draining = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._wconn = await loop.run_in_executor(self._writer, self._open_writer)
        self._rconn = await loop.run_in_executor(self._reader, connect, self.path)

    def _open_writer(self) -> sqlite3.Connection:
        prepare_files(self.path)
        conn = connect(self.path)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise StoreError(f"database {self.path} failed its integrity check: {result}")
            # Migrations that rebuild a table need foreign keys off (the pragma is a no-op in a transaction).
            conn.execute("PRAGMA foreign_keys=OFF")
            MIGRATIONS.apply(sqlite_utils.Database(conn))
            problems = conn.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise StoreError(f"database {self.path} has {len(problems)} dangling references after migrating")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        tighten(self.path)
        return conn

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._wconn is not None:
            conn, self._wconn = self._wconn, None
            await loop.run_in_executor(self._writer, conn.close)
        if self._rconn is not None:
            rconn, self._rconn = self._rconn, None
            await loop.run_in_executor(self._reader, rconn.close)
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` atomically on the writer thread and return once it is durably committed; if it raises,
        its changes are rolled back (its savepoint) and the exception is raised here."""
        if self._wconn is None:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._pending.append(_Write(fn, future, loop))
            start = not self._draining
            self._draining = True
        if start:
            self._writer.submit(self._drain)
        return await future

    def _drain(self) -> None:
        """Writer thread: run queued writes in batches until the queue is empty."""
        while True:
            with self._lock:
                batch = [self._pending.popleft() for _ in range(min(len(self._pending), MAX_BATCH))]
                if not batch:
                    self._draining = False
                    return
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Write[Any]]) -> None:
        conn = self._wconn
        outcomes: list[tuple[bool, Any]] = []
        try:
            if conn is None:
                raise StoreError("the store is closed")
            conn.execute("BEGIN IMMEDIATE")
            for write in batch:
                conn.execute("SAVEPOINT easel_write")
                try:
                    value = write.fn(conn)
                except BaseException as exc:  # handed to its caller below, not swallowed
                    conn.execute("ROLLBACK TO easel_write")
                    conn.execute("RELEASE easel_write")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE easel_write")
                    outcomes.append((True, value))
            conn.execute("COMMIT")
        except Exception as exc:  # BEGIN or COMMIT failed: nothing in this batch was written
            if conn is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
            log.exception("database write failed")
            outcomes = [(False, StoreError(f"the database refused a write: {exc}")) for _ in batch]
        for write, (ok, value) in zip(batch, outcomes, strict=True):
            write.loop.call_soon_threadsafe(_settle, write.future, ok, value)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._rconn
        if conn is None:
            raise StoreError("the store is closed")

        def run() -> T:
            conn.execute("BEGIN")  # one consistent snapshot for the whole read
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    async def on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the writer thread outside any transaction (checkpoints, backups)."""
        conn = self._wconn
        if conn is None:
            raise StoreError("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, conn)
