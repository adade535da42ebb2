"""The SQLite statements of rounds, users and workers behind `SqliteStore`: plain synchronous functions on a
connection that is already in the engine's transaction (writes) or read snapshot (reads). A round ends with its
refund written here (once: a round has at most one reserve and one refund, UNIQUE); triggers refuse a refund
that does not match its reserve, any change to a written ledger row, and any state change of a finished round
(migration m003). The ledger's balances and moderation are in `core.store.sqlite_ledger`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from core.errors import DuplicateRequest, StoreError
from core.events import ChannelKey, Platform, UserRef
from core.records import (
    FORGOTTEN_PROMPT,
    OPEN_STATES,
    Facts,
    NewRound,
    Round,
    RoundState,
    day_of,
)
from core.store.rows import (
    FINAL_STATES,
    OPEN_STATE_NAMES,
    SPENDING_STATE_NAMES,
    fact_columns,
    round_from_row,
    shas_to_column,
    stamp,
)

INBOX_RETENTION = timedelta(hours=24)
DELETED_PROMPT = FORGOTTEN_PROMPT

OPEN = ", ".join(f"'{name}'" for name in OPEN_STATE_NAMES)
SPENDING = ", ".join(f"'{name}'" for name in SPENDING_STATE_NAMES)


# -- health -------------------------------------------------------------------------------------------------


def touch(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE meta SET value = value WHERE key = 'schema'")


def safety_salt(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'safety_salt'").fetchone()
    if row is None:
        raise StoreError("the database has no safety salt")
    return str(row[0])


# -- users ------------------------------------------------------------------------------------------------


def remember_user(
    conn: sqlite3.Connection, platform: Platform, user_id: str, username: str | None, display_name: str, now: datetime
) -> None:
    conn.execute(
        "INSERT INTO users (platform, user_id, username, display_name, seen_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (platform, user_id) DO UPDATE SET username = excluded.username, "
        "display_name = excluded.display_name, seen_at = excluded.seen_at",
        (platform.value, user_id, username.lstrip("@").lower() if username else None, display_name, stamp(now)),
    )


def find_user(conn: sqlite3.Connection, platform: Platform, ref: UserRef) -> tuple[str, str] | None:
    if ref.user_id is not None:
        row = conn.execute(
            "SELECT user_id, display_name FROM users WHERE platform = ? AND user_id = ?", (platform.value, ref.user_id)
        ).fetchone()
    else:
        name = (ref.username or "").lstrip("@")
        if not name:
            return None
        row = conn.execute(
            "SELECT user_id, display_name FROM users WHERE platform = ? AND username = ? COLLATE NOCASE "
            "ORDER BY seen_at DESC LIMIT 1",
            (platform.value, name),
        ).fetchone()
    if row is None:
        return None
    return str(row["user_id"]), str(row["display_name"] or row["user_id"])


# -- rounds -----------------------------------------------------------------------------------------------


def get_round(conn: sqlite3.Connection, round_id: int) -> Round | None:
    row = conn.execute("SELECT * FROM rounds WHERE id = ?", (round_id,)).fetchone()
    return round_from_row(row) if row else None


def must_get(conn: sqlite3.Connection, round_id: int) -> Round:
    found = get_round(conn, round_id)
    if found is None:
        raise StoreError(f"no round {round_id}")
    return found


def round_by_number(conn: sqlite3.Connection, key: ChannelKey, number: int) -> Round | None:
    row = conn.execute(
        "SELECT * FROM rounds WHERE platform = ? AND community = ? AND channel = ? AND number = ? "
        "ORDER BY id DESC LIMIT 1",
        (key.platform.value, key.community, key.channel, number),
    ).fetchone()
    return round_from_row(row) if row else None


def round_by_message(conn: sqlite3.Connection, key: ChannelKey, message_id: str) -> Round | None:
    row = conn.execute(
        "SELECT r.* FROM round_messages m JOIN rounds r ON r.id = m.round_id "
        "WHERE m.platform = ? AND m.channel = ? AND m.message_id = ?",
        (key.platform.value, key.channel, message_id),
    ).fetchone()
    return round_from_row(row) if row else None


def derived_rounds(conn: sqlite3.Connection, round_id: int) -> list[Round]:
    """Rerolls made after this round in its community from the same parent with the same prompt: the
    rerolls of it (and of them, which copied the same prompt)."""
    rows = conn.execute(
        "SELECT d.* FROM rounds s JOIN rounds d ON d.platform = s.platform AND d.community = s.community "
        " AND d.parent_id IS s.parent_id AND d.prompt = s.prompt AND d.id > s.id AND d.kind = 'reroll' "
        "WHERE s.id = ? ORDER BY d.id",
        (round_id,),
    ).fetchall()
    return [round_from_row(row) for row in rows]


def create_round(conn: sqlite3.Connection, new: NewRound, now: datetime) -> Round:
    """Record a request with the channel's next number (inside the write transaction, so numbers are
    unique per channel). A known idempotency key raises `DuplicateRequest`."""
    if new.state not in (RoundState.REQUESTED, RoundState.REFUSED):
        raise ValueError(f"a new round is requested or refused, not {new.state}")
    if conn.execute("SELECT 1 FROM rounds WHERE idem_key = ?", (new.idem_key,)).fetchone():
        raise DuplicateRequest(new.idem_key)
    key = new.key
    number = conn.execute(
        "SELECT COALESCE(MAX(number), 0) + 1 FROM rounds WHERE platform = ? AND community = ? AND channel = ?",
        (key.platform.value, key.community, key.channel),
    ).fetchone()[0]
    spec = new.spec.to_row()
    when = stamp(now)
    try:
        cursor = conn.execute(
            "INSERT INTO rounds (idem_key, platform, community, channel, thread, number, user_id, user_name,"
            " parent_id, kind, prompt, size, quality, background, refs, spec, status, reason, input_shas, owner,"
            " lang, day, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new.idem_key,
                key.platform.value,
                key.community,
                key.channel,
                key.thread,
                number,
                new.user_id,
                new.user_name,
                new.parent_id,
                new.kind.value,
                new.prompt,
                spec["size"],
                spec["quality"],
                spec["background"],
                spec["refs"],
                new.spec.to_json(),
                new.state.value,
                new.reason,
                shas_to_column(new.input_shas),
                new.owner,
                new.lang,
                day_of(now),
                when,
                when,
            ),
        )
    except sqlite3.IntegrityError as exc:
        if "idem_key" in str(exc):
            raise DuplicateRequest(new.idem_key) from None
        raise
    assert cursor.lastrowid is not None
    return must_get(conn, cursor.lastrowid)


def update_round(conn: sqlite3.Connection, round_id: int, now: datetime, columns: dict[str, Any]) -> None:
    names = ", ".join(f"{name} = ?" for name in columns)
    conn.execute(
        f"UPDATE rounds SET {names}{', ' if names else ''}updated_at = ? WHERE id = ?",  # noqa: S608 - our names
        (*columns.values(), stamp(now), round_id),
    )


def _write_facts(
    conn: sqlite3.Connection, item: Round, facts: Facts | None, now: datetime, columns: dict[str, Any]
) -> None:
    update_round(conn, item.id, now, {**fact_columns(facts), **columns})
    if facts is not None and facts.progress_message is not None:
        attach_messages(conn, item.id, item.key, [facts.progress_message], "progress")


def attach_messages(
    conn: sqlite3.Connection, round_id: int, key: ChannelKey, message_ids: Sequence[str], role: str
) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO round_messages (platform, channel, message_id, round_id, role) VALUES (?, ?, ?, ?, ?)",
        [(key.platform.value, key.channel, message_id, round_id, role) for message_id in message_ids],
    )


def transition(
    conn: sqlite3.Connection, round_id: int, state: RoundState, now: datetime, facts: Facts | None
) -> bool:
    if state not in OPEN_STATES:
        raise ValueError(f"transition() moves between open states; use finish() or deliver() for {state}")
    item = get_round(conn, round_id)
    if item is None or not item.state.is_open:
        return False
    _write_facts(conn, item, facts, now, {"status": state.value})
    return True


def record_facts(conn: sqlite3.Connection, round_id: int, facts: Facts, now: datetime) -> None:
    _write_facts(conn, must_get(conn, round_id), facts, now, {})


def deliver(
    conn: sqlite3.Connection,
    round_id: int,
    key: ChannelKey,
    message_ids: Sequence[str],
    facts: Facts,
    now: datetime,
) -> None:
    """The image reached the chat. Its messages are recorded whatever the state (a reply to it must
    resolve); an open round becomes `delivered`, and its reserve stands."""
    item = must_get(conn, round_id)
    attach_messages(conn, round_id, key, message_ids, "result")
    if item.state.is_open or item.state is RoundState.DELIVERED:
        _write_facts(conn, item, facts, now, {"status": RoundState.DELIVERED.value})


def finish(
    conn: sqlite3.Connection, round_id: int, state: RoundState, reason: str, now: datetime, facts: Facts | None
) -> int:
    if state not in FINAL_STATES:
        raise ValueError(f"finish() ends a round as failed, cancelled or refused, not {state}")
    item = get_round(conn, round_id)
    if item is None or not item.state.is_open:
        return 0  # delivered stays charged; an ended round stays as it ended
    columns: dict[str, Any] = {"status": state.value, "reason": reason}
    if not item.state.may_be_billed:
        columns["est_usd"] = 0.0  # the provider was never called: nothing was spent
    _write_facts(conn, item, facts, now, columns)
    return refund(conn, round_id, now)


def refund(conn: sqlite3.Connection, round_id: int, now: datetime) -> int:
    """Give back a round's reserve, once, on the reserve's day. Returns the amount refunded now."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO ledger (round_id, platform, community, user_id, kind, amount, day, created_at) "
        "SELECT round_id, platform, community, user_id, 'refund', amount, day, ? FROM ledger "
        "WHERE round_id = ? AND kind = 'reserve'",
        (stamp(now), round_id),
    )
    if not cursor.rowcount:
        return 0
    row = conn.execute("SELECT amount FROM ledger WHERE round_id = ? AND kind = 'refund'", (round_id,)).fetchone()
    return int(row[0])


def open_rounds(conn: sqlite3.Connection, owner: str | None) -> list[Round]:
    if owner is None:
        rows = conn.execute(f"SELECT * FROM rounds WHERE status IN ({OPEN}) ORDER BY id").fetchall()  # noqa: S608
    else:
        rows = conn.execute(
            f"SELECT * FROM rounds WHERE status IN ({OPEN}) AND owner = ? ORDER BY id",  # noqa: S608
            (owner,),
        ).fetchall()
    return [round_from_row(row) for row in rows]


def adopt_rounds(conn: sqlite3.Connection, owner: str, now: datetime, stale_after: float) -> list[Round]:
    """Open rounds of no owner, or of an owner without a heartbeat since `stale_after` seconds, become
    `owner`'s. The caller's own rounds are not returned (it is alive: it is asking)."""
    cutoff = stamp(now - timedelta(seconds=stale_after))
    ids = [
        int(row[0])
        for row in conn.execute(
            f"SELECT id FROM rounds WHERE status IN ({OPEN}) AND (owner IS NULL OR (owner <> ? AND NOT EXISTS "  # noqa: S608
            " (SELECT 1 FROM workers w WHERE w.owner = rounds.owner AND w.heartbeat_at >= ?))) ORDER BY id",
            (owner, cutoff),
        )
    ]
    conn.executemany(
        "UPDATE rounds SET owner = ?, updated_at = ? WHERE id = ?", [(owner, stamp(now), i) for i in ids]
    )
    return [must_get(conn, i) for i in ids]


def heartbeat(conn: sqlite3.Connection, owner: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO workers (owner, heartbeat_at) VALUES (?, ?) "
        "ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        (owner, stamp(now)),
    )


def retire(conn: sqlite3.Connection, owner: str) -> None:
    conn.execute("DELETE FROM workers WHERE owner = ?", (owner,))
