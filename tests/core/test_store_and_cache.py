"""The image cache's content addressing and retention. (The SQLite store's own guarantees, WAL, migrations,
a damaged file refused, group commit, are tests/store/test_sqlite_backend.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

from core.provider.cache import ImageCache


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


def test_size_cap_holds_on_every_write(tmp_path: Path) -> None:
    """Not only at the hourly prune: a write that takes the cache over its cap removes the oldest files."""
    cache = ImageCache(tmp_path / "images", max_age_days=30, max_bytes=2500)
    shas = []
    for index in range(5):
        shas.append(cache.put(bytes([index]) * 1000, "image/png"))
        old = time.time() - 100 + index  # distinct ages, oldest first
        os.utime(cache._path(shas[-1], "image/png"), (old, old))
        total = sum(p.stat().st_size for p in (tmp_path / "images").glob("*/*"))
        assert total <= 2500, f"after write {index + 1} the cache holds {total} bytes"
    assert cache.get(shas[-1], "image/png") is not None  # the newest stays
    assert cache.get(shas[0], "image/png") is None  # the oldest went first
