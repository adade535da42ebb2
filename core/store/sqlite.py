"""SQLite through sqlite-utils: ordered migrations at start-up, WAL, and a single writer off the event loop.

Every write runs in one dedicated thread on one connection, inside `BEGIN IMMEDIATE ... COMMIT`, so a
read-then-write (a quota check) can never race another writer. Reads run on a second thread with their own
connection; WAL lets them proceed while the writer works.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import sqlite_utils

from core.errors import StoreError
from core.store.migrations import MIGRATIONS

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_BATCH = 256  # writes sharing one commit at most


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


class Store:
    """Open with `async with Store(path) as store:`; then `await store.write(fn)` / `await store.read(fn)`,
    where `fn(conn)` is plain synchronous sqlite3 code."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-db-writer")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-db-reader")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._pending: deque[_Write[Any]] = deque()
        self._draining = False

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
        """Run `fn` atomically on the writer thread and return once it is durably committed; if it raises,
        its changes are rolled back and the exception is raised here.

        Group commit: writes that queue up while the writer is busy share one `BEGIN IMMEDIATE ... COMMIT`
        (one fsync), each inside its own savepoint, so one write's failure never touches another's. Under
        load this is what keeps the single writer from becoming the queue every round waits in."""
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
