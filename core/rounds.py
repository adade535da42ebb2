"""The round tree: every image is a round with a parent (or none). Replying to any earlier image branches
from it; "a reply to platform message X" is resolved through `round_messages`, so it survives restarts.

Functions take a connection inside the store's transaction (writes) or read snapshot (reads)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.errors import DuplicateRequest
from core.events import ChannelKey, Platform

OPEN_STATUSES = ("pending", "reserved", "running", "generated")


@dataclass(frozen=True, slots=True)
class Round:
    id: int
    key: ChannelKey
    number: int
    user_id: str
    user_name: str
    parent_id: int | None
    kind: str
    prompt: str
    size: str
    quality: str
    cost: int
    status: str
    input_sha: str | None
    image_sha: str | None
    mime: str | None
    response_id: str | None
    image_call_id: str | None
    revised_prompt: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Round:
        return cls(
            id=row["id"],
            key=ChannelKey(Platform(row["platform"]), row["community"], row["channel"], row["thread"]),
            number=row["number"],
            user_id=row["user_id"],
            user_name=row["user_name"],
            parent_id=row["parent_id"],
            kind=row["kind"],
            prompt=row["prompt"],
            size=row["size"],
            quality=row["quality"],
            cost=row["cost"],
            status=row["status"],
            input_sha=row["input_sha"],
            image_sha=row["image_sha"],
            mime=row["mime"],
            response_id=row["response_id"],
            image_call_id=row["image_call_id"],
            revised_prompt=row["revised_prompt"],
        )


def get(conn: sqlite3.Connection, round_id: int) -> Round | None:
    row = conn.execute("SELECT * FROM rounds WHERE id = ?", (round_id,)).fetchone()
    return Round.from_row(row) if row else None


def by_number(conn: sqlite3.Connection, key: ChannelKey, number: int) -> Round | None:
    row = conn.execute(
        "SELECT * FROM rounds WHERE platform = ? AND community = ? AND channel = ? AND number = ?",
        (key.platform, key.community, key.channel, number),
    ).fetchone()
    return Round.from_row(row) if row else None


def by_message(conn: sqlite3.Connection, key: ChannelKey, message_id: str) -> Round | None:
    row = conn.execute(
        "SELECT r.* FROM round_messages m JOIN rounds r ON r.id = m.round_id "
        "WHERE m.platform = ? AND m.channel = ? AND m.message_id = ?",
        (key.platform, key.channel, message_id),
    ).fetchone()
    return Round.from_row(row) if row else None


def lineage(conn: sqlite3.Connection, round_id: int) -> list[Round]:
    """The round and its ancestors, oldest first."""
    rows = conn.execute(
        "WITH RECURSIVE up(id, depth) AS (SELECT ?, 0 UNION ALL "
        " SELECT r.parent_id, up.depth + 1 FROM rounds r JOIN up ON r.id = up.id WHERE r.parent_id IS NOT NULL) "
        "SELECT rounds.* FROM up JOIN rounds ON rounds.id = up.id ORDER BY up.depth DESC",
        (round_id,),
    ).fetchall()
    return [Round.from_row(row) for row in rows]


def claim(
    conn: sqlite3.Connection,
    *,
    idem_key: str,
    key: ChannelKey,
    user_id: str,
    user_name: str,
    parent_id: int | None,
    kind: str,
    prompt: str,
    size: str,
    quality: str,
    input_sha: str | None,
    now: datetime,
) -> Round:
    """Record a new request as a `pending` round with the channel's next number. A repeated idempotency key
    raises `DuplicateRequest`: the platform redelivered an event we already have."""
    if conn.execute("SELECT 1 FROM rounds WHERE idem_key = ?", (idem_key,)).fetchone():
        raise DuplicateRequest(idem_key)
    number = conn.execute(
        "SELECT COALESCE(MAX(number), 0) + 1 FROM rounds WHERE platform = ? AND community = ? AND channel = ?",
        (key.platform, key.community, key.channel),
    ).fetchone()[0]
    stamp = now.isoformat()
    cursor = conn.execute(
        "INSERT INTO rounds (idem_key, platform, community, channel, thread, number, user_id, user_name, "
        " parent_id, kind, prompt, size, quality, status, input_sha, day, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
        (
            idem_key,
            key.platform,
            key.community,
            key.channel,
            key.thread,
            number,
            user_id,
            user_name,
            parent_id,
            kind,
            prompt,
            size,
            quality,
            input_sha,
            stamp[:10],
            stamp,
            stamp,
        ),
    )
    row_id = cursor.lastrowid
    assert row_id is not None
    created = get(conn, row_id)
    assert created is not None
    return created


def update(conn: sqlite3.Connection, round_id: int, now: datetime, **fields: Any) -> None:
    columns = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(
        f"UPDATE rounds SET {columns}, updated_at = ? WHERE id = ?",  # noqa: S608 - names are ours, values bound
        (*fields.values(), now.isoformat(), round_id),
    )


def attach_messages(conn: sqlite3.Connection, round_id: int, key: ChannelKey, message_ids: list[str]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO round_messages (platform, channel, message_id, round_id) VALUES (?, ?, ?, ?)",
        [(key.platform, key.channel, message_id, round_id) for message_id in message_ids],
    )


def open_rounds(conn: sqlite3.Connection) -> list[Round]:
    marks = ", ".join("?" for _ in OPEN_STATUSES)
    rows = conn.execute(f"SELECT * FROM rounds WHERE status IN ({marks})", OPEN_STATUSES).fetchall()  # noqa: S608
    return [Round.from_row(row) for row in rows]
