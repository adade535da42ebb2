"""Image bytes in PostgreSQL, behind `core.ports.ImageStore`: with `EASEL_DATABASE_URL` set, every worker reads
the images every other worker made, and none depends on another's local disk.

Content-addressed like `core.provider.cache.ImageCache` (key: SHA-256 of the bytes, and the mime type), with
the same retention rules (`prune`: older than the age limit since last use, then the least recently used until
the total fits the cap). Synchronous, as the port says: callers run it through `asyncio.to_thread`.
The table comes from PostgreSQL migration 2 (`core.store.pg_migrations`)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from psycopg_pool import ConnectionPool

from core.provider.cache import PruneReport


class PgImageStore:
    """`PgImageStore(url)` opens (and `close()` closes) its own small pool; `PgImageStore(pool)` borrows one."""

    def __init__(self, target: str | ConnectionPool, *, max_age_days: float = 0, max_bytes: int = 0) -> None:
        if isinstance(target, str):
            self._pool = ConnectionPool(target, min_size=1, max_size=4, open=True)
            self._owned = True
        else:
            self._pool = target
            self._owned = False
        self.max_age_days = max_age_days
        self.max_bytes = max_bytes

    def close(self) -> None:
        if self._owned:
            self._pool.close()

    def __enter__(self) -> PgImageStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def put(self, data: bytes, mime: str) -> str:
        sha = hashlib.sha256(data).hexdigest()
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO images (sha, mime, data) VALUES (%s, %s, %s) "
                "ON CONFLICT (sha, mime) DO UPDATE SET used_at = now()",
                (sha, mime, data),
            )
        return sha

    def get(self, sha: str, mime: str) -> bytes | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT data FROM images WHERE sha = %s AND mime = %s", (sha, mime)).fetchone()
        return bytes(row[0]) if row else None

    def delete(self, sha: str, mime: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM images WHERE sha = %s AND mime = %s", (sha, mime))

    def stats(self) -> tuple[int, int]:
        """(images, total bytes)."""
        with self._pool.connection() as conn:
            row = conn.execute("SELECT count(*), COALESCE(SUM(octet_length(data)), 0) FROM images").fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def prune(self, now: datetime | None = None) -> PruneReport:
        """Delete images unused for longer than the age limit, then the least recently used beyond the cap."""
        now = now or datetime.now(UTC)
        removed = 0
        with self._pool.connection() as conn:
            if self.max_age_days > 0:
                cursor = conn.execute(
                    "DELETE FROM images WHERE used_at < %s", (now - timedelta(days=self.max_age_days),)
                )
                removed += cursor.rowcount
            if self.max_bytes > 0:
                cursor = conn.execute(
                    "DELETE FROM images WHERE (sha, mime) IN (SELECT sha, mime FROM ("
                    " SELECT sha, mime, SUM(octet_length(data)) OVER (ORDER BY used_at DESC, sha) AS running"
                    " FROM images) ranked WHERE running > %s)",
                    (self.max_bytes,),
                )
                removed += cursor.rowcount
        kept, bytes_kept = self.stats()
        return PruneReport(removed=removed, kept=kept, bytes_kept=bytes_kept)
