"""The store's guarantees (WAL, FULL sync, migrations once, rollback) and the image cache's retention."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.provider.cache import ImageCache
from core.store.sqlite import Store


async def test_pragmas_and_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    for _ in range(2):
        async with Store(path) as store:
            mode = await store.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
            sync = await store.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
            assert mode == "wal" and sync == 2  # FULL
            applied = await store.read(lambda c: c.execute("SELECT COUNT(*) FROM _sqlite_migrations").fetchone()[0])
            assert applied == 2  # m001_initial, m002_inbox
            assert await store.writable()


async def test_writes_run_on_one_thread_and_roll_back(tmp_path: Path) -> None:
    threads: set[int] = set()
    async with Store(tmp_path / "e.db") as store:

        def failing(conn: sqlite3.Connection) -> None:
            threads.add(threading.get_ident())
            conn.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            await store.write(failing)
        await store.write(lambda c: threads.add(threading.get_ident()))
        assert len(threads) == 1 and threading.get_ident() not in threads
        assert await store.read(lambda c: c.execute("SELECT COUNT(*) FROM meta WHERE key = 'x'").fetchone()[0]) == 0


async def test_corrupt_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    with pytest.raises((sqlite3.DatabaseError, Exception)):
        async with Store(path):
            pass


def test_cache_is_content_addressed_and_pruned(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "img", max_age_days=1, max_bytes=250)
    a = cache.put(b"a" * 100, "image/png")
    assert cache.put(b"a" * 100, "image/png") == a  # same bytes, same file
    b = cache.put(b"b" * 100, "image/jpeg")
    assert cache.get(a, "image/png") == b"a" * 100 and cache.get(b, "image/jpeg") == b"b" * 100
    old = time.time() - 2 * 86400
    os.utime(next((tmp_path / "img").glob(f"*/{a}.png")), (old, old))
    report = cache.prune()
    assert report.removed == 1 and cache.get(a, "image/png") is None
    hour_ago = time.time() - 3600
    os.utime(next((tmp_path / "img").glob(f"*/{b}.jpg")), (hour_ago, hour_ago))
    c = cache.put(b"c" * 100, "image/png")
    d = cache.put(b"d" * 100, "image/png")
    cache.prune()
    kept = [sha for sha, mime in ((b, "image/jpeg"), (c, "image/png"), (d, "image/png")) if cache.get(sha, mime)]
    assert kept == [c, d]  # over the cap: the oldest went first


def test_concurrent_puts_of_the_same_image(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cache = ImageCache(tmp_path / "img", max_age_days=1, max_bytes=10**9)
    data = os.urandom(200_000)
    with ThreadPoolExecutor(8) as pool:
        shas = list(pool.map(lambda _: cache.put(data, "image/png"), range(32)))
    assert len(set(shas)) == 1 and cache.get(shas[0], "image/png") == data
    assert not list((tmp_path / "img").glob("*/*.tmp"))


async def test_group_commit_isolates_each_write(tmp_path: Path) -> None:
    """Concurrent writes share commits, but each is atomic on its own and gets its own result or error."""
    import asyncio

    async with Store(tmp_path / "e.db") as store:

        def insert(n: int) -> Callable[[sqlite3.Connection], int]:
            def fn(conn: sqlite3.Connection) -> int:
                conn.execute("INSERT INTO meta (key, value) VALUES (?, 'v')", (f"k{n}",))
                if n % 10 == 3:
                    raise ValueError(f"write {n} fails after inserting")
                return n

            return fn

        results = await asyncio.gather(*(store.write(insert(n)) for n in range(50)), return_exceptions=True)
        failed = [n for n, r in enumerate(results) if isinstance(r, ValueError)]
        assert failed == [3, 13, 23, 33, 43]
        assert [r for r in results if not isinstance(r, BaseException)] == [n for n in range(50) if n % 10 != 3]
        keys = await store.read(lambda c: {r[0] for r in c.execute("SELECT key FROM meta WHERE key LIKE 'k%'")})
        assert keys == {f"k{n}" for n in range(50) if n % 10 != 3}
