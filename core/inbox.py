"""The durable inbox: platform updates are written here before the platform is told they arrived, and removed
once handled. A crash in between loses nothing: the adapter replays what is left when it starts again.

Replaying is safe because rounds and moderator actions dedupe by idempotency key in the core; a read-only
command (e.g. a credits report) may answer twice after a crash. Rows older than `RETENTION` are dropped unread:
the platform would not redeliver them either, and by then an answer would only confuse.

Payloads are the platform's update JSON (user text, file ids); never a token or a file URL (the adapter's
duty). `secure_delete` (core.store.sqlite) keeps handled payloads from lingering in free pages."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta

from core.events import Platform
from core.store.sqlite import Store

RETENTION = timedelta(hours=24)


def _put(conn: sqlite3.Connection, platform: Platform, items: Sequence[tuple[str, str]], now: datetime) -> None:
    stamp = now.isoformat()
    conn.executemany(
        "INSERT OR IGNORE INTO inbox (platform, idem_key, payload, received_at) VALUES (?, ?, ?, ?)",
        [(platform.value, key, payload, stamp) for key, payload in items],
    )


def _pending(conn: sqlite3.Connection, platform: Platform, now: datetime) -> list[str]:
    conn.execute(
        "DELETE FROM inbox WHERE platform = ? AND received_at < ?", (platform.value, (now - RETENTION).isoformat())
    )
    rows = conn.execute(
        "SELECT payload FROM inbox WHERE platform = ? ORDER BY received_at, rowid", (platform.value,)
    ).fetchall()
    return [str(row[0]) for row in rows]


async def put(store: Store, platform: Platform, items: Sequence[tuple[str, str]], now: datetime) -> None:
    """Record (idem_key, payload) pairs in one transaction; a key already recorded is left as it is."""
    if items:
        await store.write(lambda c: _put(c, platform, items, now))


async def done(store: Store, platform: Platform, idem_key: str) -> None:
    await store.write(
        lambda c: c.execute("DELETE FROM inbox WHERE platform = ? AND idem_key = ?", (platform.value, idem_key))
    )


async def pending(store: Store, platform: Platform, now: datetime) -> list[str]:
    """Payloads not yet handled, oldest first; drops those older than `RETENTION` on the way."""
    return await store.write(lambda c: _pending(c, platform, now))
