"""The SQLite statements around rounds: usage reports, notices for users, the durable inbox, and forgetting
a user on request."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from core.events import ChannelKey
from core.records import (
    CommunityUsage,
    Forgotten,
    InboxItem,
    PendingNotice,
    TopUser,
    UsageTotals,
    day_of,
)
from core.store.rows import (
    community_usage_from_row,
    notice_from_row,
    prompt_snippet,
    shas_from_column,
    stamp,
    top_user_from_row,
)
from core.store.sqlite_sql import DELETED_PROMPT, INBOX_RETENTION, derived_rounds

# -- reports ----------------------------------------------------------------------------------------------


_USAGE_TOTALS = (
    "SELECT COUNT(CASE WHEN r.status = 'delivered' THEN 1 END) AS images,"
    " COALESCE(SUM(r.est_usd), 0) AS usd,"
    " COALESCE(SUM((SELECT COALESCE(SUM(CASE l.kind WHEN 'reserve' THEN l.amount ELSE -l.amount END), 0)"
    "   FROM ledger l WHERE l.round_id = r.id)), 0) AS credits "
    "FROM rounds r WHERE r.platform = ? AND r.community = ? AND r.day >= ? "
)
_COMMUNITY_USAGE = (
    "SELECT platform, community,"
    " SUM(CASE WHEN day = ? AND status = 'delivered' THEN 1 ELSE 0 END) AS today_images,"
    " SUM(CASE WHEN day = ? AND status = 'delivered' THEN cost ELSE 0 END) AS today_credits,"
    " SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END) AS month_images,"
    " SUM(CASE WHEN status = 'delivered' THEN cost ELSE 0 END) AS month_credits,"
    " COALESCE(SUM(est_usd), 0) AS month_usd "
    "FROM rounds WHERE day >= ? {only} GROUP BY platform, community "
    "ORDER BY month_credits DESC, platform, community"
)


def usage_totals(
    conn: sqlite3.Connection, platform: str, community: str, since: str, user_id: str | None
) -> UsageTotals:
    only = "AND r.user_id = ?" if user_id is not None else ""
    args: tuple[str, ...] = (platform, community, since, *((user_id,) if user_id is not None else ()))
    row = conn.execute(_USAGE_TOTALS + only, args).fetchone()
    return UsageTotals(images=int(row["images"]), credits=int(row["credits"]), usd=float(row["usd"]))


def top_users(conn: sqlite3.Connection, platform: str, community: str, since: str, limit: int) -> list[TopUser]:
    rows = conn.execute(
        "SELECT user_id, MAX(user_name) AS name, COUNT(*) AS images, SUM(cost) AS credits FROM rounds "
        "WHERE platform = ? AND community = ? AND day >= ? AND status = 'delivered' "
        "GROUP BY user_id ORDER BY credits DESC, images DESC, user_id LIMIT ?",
        (platform, community, since, limit),
    ).fetchall()
    return [top_user_from_row(row) for row in rows]


def community_usage(conn: sqlite3.Connection, now: datetime, community: str | None) -> list[CommunityUsage]:
    today = day_of(now)
    month = today[:8] + "01"
    only = "AND community = ?" if community is not None else ""
    args: tuple[str, ...] = (today, today, month, *((community,) if community is not None else ()))
    rows = conn.execute(_COMMUNITY_USAGE.replace("{only}", only), args).fetchall()
    return [community_usage_from_row(row) for row in rows]


# -- notices ----------------------------------------------------------------------------------------------


def add_notice(
    conn: sqlite3.Connection, key: ChannelKey, reply_to: str | None, text: str, now: datetime, user_id: str | None
) -> None:
    conn.execute(
        "INSERT INTO notices (platform, community, channel, thread, reply_to, text, user_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (key.platform.value, key.community, key.channel, key.thread, reply_to, text, user_id, stamp(now)),
    )


def pending_notices(conn: sqlite3.Connection, platform: str) -> list[PendingNotice]:
    rows = conn.execute(
        "SELECT * FROM notices WHERE platform = ? AND sent_at IS NULL ORDER BY id", (platform,)
    ).fetchall()
    return [notice_from_row(row) for row in rows]


def notice_sent(conn: sqlite3.Connection, notice_id: int, now: datetime) -> None:
    conn.execute("UPDATE notices SET sent_at = ? WHERE id = ?", (stamp(now), notice_id))


# -- inbox ------------------------------------------------------------------------------------------------


def inbox_put(conn: sqlite3.Connection, platform: str, items: Sequence[tuple[str, str]], now: datetime) -> None:
    when = stamp(now)
    conn.executemany(
        "INSERT OR IGNORE INTO inbox (platform, idem_key, payload, received_at) VALUES (?, ?, ?, ?)",
        [(platform, key, payload, when) for key, payload in items],
    )


def inbox_done(conn: sqlite3.Connection, platform: str, idem_key: str) -> None:
    conn.execute("DELETE FROM inbox WHERE platform = ? AND idem_key = ?", (platform, idem_key))


def inbox_pending(conn: sqlite3.Connection, platform: str, now: datetime) -> list[InboxItem]:
    """Updates not yet handled, oldest first; those older than the retention are dropped unread."""
    conn.execute("DELETE FROM inbox WHERE platform = ? AND received_at < ?", (platform, stamp(now - INBOX_RETENTION)))
    rows = conn.execute(
        "SELECT idem_key, payload FROM inbox WHERE platform = ? ORDER BY received_at, rowid", (platform,)
    ).fetchall()
    return [InboxItem(idem_key=str(row[0]), payload=str(row[1])) for row in rows]


# -- privacy ----------------------------------------------------------------------------------------------


def forget_user(conn: sqlite3.Connection, platform: str, user_id: str) -> Forgotten:
    """Erase a user's prompts, name, images and provider response ids; the prompts copied into rounds
    derived from theirs (rerolls by others) and the notices quoting them. The ledger keeps its rows (amounts
    and the platform user id), so balances and reports stay exact. `secure_delete` is on; the caller
    checkpoints afterwards so the text does not linger in the WAL."""
    own = conn.execute(
        "SELECT id, community, prompt, image_sha, input_shas, mime, response_id FROM rounds"
        " WHERE platform = ? AND user_id = ?",
        (platform, user_id),
    ).fetchall()
    others = {d.id: d for row in own for d in derived_rounds(conn, int(row["id"])) if d.user_id != user_id}
    derived = set(others)
    response_ids = sorted({str(r["response_id"]) for r in own if r["response_id"]}
                          | {d.response_id for d in others.values() if d.response_id})
    snippets = {(str(row["community"]), prompt_snippet(str(row["prompt"]))) for row in own}
    conn.execute(
        "UPDATE rounds SET prompt = ?, revised_prompt = NULL, user_name = '', response_id = NULL,"
        " image_call_id = NULL WHERE platform = ? AND user_id = ?",
        (DELETED_PROMPT, platform, user_id),
    )
    conn.executemany(
        "UPDATE rounds SET prompt = ?, revised_prompt = NULL, response_id = NULL, image_call_id = NULL WHERE id = ?",
        [(DELETED_PROMPT, round_id) for round_id in derived],
    )
    conn.execute("DELETE FROM users WHERE platform = ? AND user_id = ?", (platform, user_id))
    conn.execute("DELETE FROM notices WHERE platform = ? AND user_id = ?", (platform, user_id))
    for community, snippet in snippets:  # notices written before they carried a user id
        if snippet and snippet != DELETED_PROMPT:
            conn.execute(
                "DELETE FROM notices WHERE platform = ? AND community = ? AND user_id IS NULL AND instr(text, ?) > 0",
                (platform, community, snippet),
            )
    candidates = {(str(r["image_sha"]), str(r["mime"] or "image/png")) for r in own if r["image_sha"]}
    candidates |= {(sha, "image/png") for r in own for sha in shas_from_column(r["input_shas"])}
    orphaned = [
        (sha, mime)
        for sha, mime in sorted(candidates)
        if conn.execute(
            "SELECT 1 FROM rounds WHERE NOT (platform = ? AND user_id = ?) AND (image_sha = ? OR EXISTS "
            " (SELECT 1 FROM json_each(rounds.input_shas) WHERE json_each.value = ?)) LIMIT 1",
            (platform, user_id, sha, sha),
        ).fetchone()
        is None
    ]
    conn.execute(
        "UPDATE rounds SET image_sha = NULL, input_shas = '[]' WHERE platform = ? AND user_id = ?", (platform, user_id)
    )
    return Forgotten(rounds=len(own), images=orphaned, response_ids=response_ids)
