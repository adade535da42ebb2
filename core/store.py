"""SQLite through sqlite-utils: ordered migrations at start-up, WAL, and a single writer off the event loop.

Every write runs in one dedicated thread on one connection, inside `BEGIN IMMEDIATE ... COMMIT`, so a
read-then-write (a quota check) can never race another writer. Reads run on a second thread with their own
connection; WAL lets them proceed while the writer works.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import sqlite_utils

from core.errors import StoreError
from core.schema import MIGRATIONS

T = TypeVar("T")
log = logging.getLogger(__name__)


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


class Store:
    """Open with `async with Store(path) as store:`; then `await store.write(fn)` / `await store.read(fn)`,
    where `fn(conn)` is plain synchronous sqlite3 code."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-db-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-db-reader")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._wconn = await loop.run_in_executor(self._writer, self._open_writer)
        self._rconn = await loop.run_in_executor(self._reader, connect, self.path)

    def _open_writer(self) -> sqlite3.Connection:
        conn = connect(self.path)
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise StoreError(f"database {self.path} failed its integrity check: {result}")
        MIGRATIONS.apply(sqlite_utils.Database(conn))
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
        """Run `fn` in one `BEGIN IMMEDIATE` transaction on the writer thread; roll back if it raises."""
        conn = self._wconn
        if conn is None:
            raise StoreError("the store is closed")

        def run() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

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

    async def checkpoint(self) -> None:
        """Fold the WAL into the database file and truncate it (after erasing data)."""
        conn = self._wconn
        if conn is None:
            raise StoreError("the store is closed")
        await asyncio.get_running_loop().run_in_executor(
            self._writer, lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        )

    async def writable(self) -> bool:
        """Readiness check: can the writer still commit?"""
        try:
            await self.write(lambda c: c.execute("UPDATE meta SET value = value WHERE key = 'schema'"))
        except (sqlite3.Error, StoreError):
            return False
        return True
