"""The SQLite statements behind `SqliteStore`: plain synchronous functions on a connection that is already in
the engine's transaction (writes) or read snapshot (reads).

The ledger is append-only; a balance is always computed from it, never kept as a counter:

    left on a day = daily allowance + grants that day - reserves that day + refunds of that day's reserves

(a refund is written on its reserve's day). A round has at most one reserve and one refund (UNIQUE), and
triggers refuse a refund that does not match its reserve, any change to a written ledger row, and any
state change of a finished round (migration m003)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from core.errors import Banned, BudgetExhausted, DuplicateRequest, OverQuota, StoreError
from core.events import ChannelKey, Platform, UserRef
from core.records import (
    COMMUNITY_DEFAULT,
    OPEN_STATES,
    Balance,
    CommunityUsage,
    Facts,
    Forgotten,
    InboxItem,
    ModChange,
    ModVerb,
    NewRound,
    PendingNotice,
    Policy,
    Reservation,
    Round,
    RoundState,
    TopUser,
    UsageTotals,
    day_of,
    next_reset,
)
from core.store.rows import (
    FINAL_STATES,
    OPEN_STATE_NAMES,
    SPENDING_STATE_NAMES,
    fact_columns,
    notice_from_row,
    prompt_snippet,
    round_from_row,
    shas_from_column,
    shas_to_column,
    stamp,
)

INBOX_RETENTION = timedelta(hours=24)
DELETED_PROMPT = "[deleted]"

_OPEN = ", ".join(f"'{name}'" for name in OPEN_STATE_NAMES)
_SPENDING = ", ".join(f"'{name}'" for name in SPENDING_STATE_NAMES)


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


def _must_get(conn: sqlite3.Connection, round_id: int) -> Round:
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
    return _must_get(conn, cursor.lastrowid)


def _update_round(conn: sqlite3.Connection, round_id: int, now: datetime, columns: dict[str, Any]) -> None:
    names = ", ".join(f"{name} = ?" for name in columns)
    conn.execute(
        f"UPDATE rounds SET {names}{', ' if names else ''}updated_at = ? WHERE id = ?",  # noqa: S608 - our names
        (*columns.values(), stamp(now), round_id),
    )


def _write_facts(
    conn: sqlite3.Connection, item: Round, facts: Facts | None, now: datetime, columns: dict[str, Any]
) -> None:
    _update_round(conn, item.id, now, {**fact_columns(facts), **columns})
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
    _write_facts(conn, _must_get(conn, round_id), facts, now, {})


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
    item = _must_get(conn, round_id)
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
        rows = conn.execute(f"SELECT * FROM rounds WHERE status IN ({_OPEN}) ORDER BY id").fetchall()  # noqa: S608
    else:
        rows = conn.execute(
            f"SELECT * FROM rounds WHERE status IN ({_OPEN}) AND owner = ? ORDER BY id",  # noqa: S608
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
            f"SELECT id FROM rounds WHERE status IN ({_OPEN}) AND (owner IS NULL OR (owner <> ? AND NOT EXISTS "  # noqa: S608
            " (SELECT 1 FROM workers w WHERE w.owner = rounds.owner AND w.heartbeat_at >= ?))) ORDER BY id",
            (owner, cutoff),
        )
    ]
    conn.executemany(
        "UPDATE rounds SET owner = ?, updated_at = ? WHERE id = ?", [(owner, stamp(now), i) for i in ids]
    )
    return [_must_get(conn, i) for i in ids]


def heartbeat(conn: sqlite3.Connection, owner: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO workers (owner, heartbeat_at) VALUES (?, ?) "
        "ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        (owner, stamp(now)),
    )


def retire(conn: sqlite3.Connection, owner: str) -> None:
    conn.execute("DELETE FROM workers WHERE owner = ?", (owner,))


# -- credits ----------------------------------------------------------------------------------------------


def policy(conn: sqlite3.Connection, platform: str, community: str, user_id: str, default_daily: int) -> Policy:
    rows = {
        row["user_id"]: row
        for row in conn.execute(
            "SELECT user_id, daily, banned FROM policies WHERE platform = ? AND community = ? AND user_id IN (?, ?)",
            (platform, community, user_id, COMMUNITY_DEFAULT),
        )
    }
    own, default = rows.get(user_id), rows.get(COMMUNITY_DEFAULT)
    daily = default_daily
    if default is not None and default["daily"] is not None:
        daily = int(default["daily"])
    custom = own is not None and own["daily"] is not None
    if own is not None and own["daily"] is not None:
        daily = int(own["daily"])
    return Policy(daily=daily, banned=bool(own is not None and own["banned"]), custom=custom)


def balance(
    conn: sqlite3.Connection, platform: str, community: str, user_id: str, day: str, default_daily: int
) -> Balance:
    row = conn.execute(
        "SELECT "
        " COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount WHEN 'refund' THEN -amount END), 0) AS used,"
        " COALESCE(SUM(CASE kind WHEN 'grant' THEN amount END), 0) AS granted "
        "FROM ledger WHERE platform = ? AND community = ? AND user_id = ? AND day = ?",
        (platform, community, user_id, day),
    ).fetchone()
    pol = policy(conn, platform, community, user_id, default_daily)
    return Balance(daily=pol.daily, granted=int(row["granted"]), used=int(row["used"]), banned=pol.banned)


def reserve(conn: sqlite3.Connection, req: Reservation) -> Balance:
    """Check the ban, the balance and the day's budget, then charge: all in the caller's transaction; a
    refusal raises before anything is written."""
    item = _must_get(conn, req.round_id)
    if item.state is not RoundState.REQUESTED:
        if conn.execute("SELECT 1 FROM ledger WHERE round_id = ? AND kind = 'reserve'", (item.id,)).fetchone():
            raise DuplicateRequest(f"round {item.id} is already reserved")
        raise StoreError(f"round {item.id} is {item.state}, not requested")
    key, day = item.key, day_of(req.now)
    bal = balance(conn, key.platform.value, key.community, item.user_id, day, req.default_daily)
    resets_at = next_reset(req.now)
    if bal.banned:
        raise Banned("quota.banned")
    if bal.left < req.cost:
        raise OverQuota("quota.over", cost=req.cost, left=bal.left, resets_at=resets_at)
    if req.budget_usd is not None and spend_on(conn, day) + req.est_usd > req.budget_usd:
        raise BudgetExhausted("budget.exhausted", resets_at=resets_at)
    conn.execute(
        "INSERT INTO ledger (round_id, platform, community, user_id, kind, amount, day, created_at) "
        "VALUES (?, ?, ?, ?, 'reserve', ?, ?, ?)",
        (item.id, key.platform.value, key.community, item.user_id, req.cost, day, stamp(req.now)),
    )
    _update_round(
        conn, item.id, req.now, {"status": RoundState.QUEUED.value, "cost": req.cost, "est_usd": req.est_usd}
    )
    return Balance(daily=bal.daily, granted=bal.granted, used=bal.used + req.cost, banned=False)


def spend_on(conn: sqlite3.Connection, day: str) -> float:
    row = conn.execute(
        f"SELECT COALESCE(SUM(est_usd), 0) FROM rounds WHERE day = ? AND status IN ({_SPENDING})",  # noqa: S608
        (day,),
    ).fetchone()
    return float(row[0])


def granted_by(conn: sqlite3.Connection, platform: str, community: str, actor_id: str, day: str) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM ledger "
        "WHERE kind = 'grant' AND platform = ? AND community = ? AND actor_id = ? AND day = ?",
        (platform, community, actor_id, day),
    ).fetchone()
    return int(row[0])


# -- moderation -------------------------------------------------------------------------------------------


def moderate(conn: sqlite3.Connection, change: ModChange) -> None:
    if conn.execute("SELECT 1 FROM audit WHERE idem_key = ?", (change.idem_key,)).fetchone():
        raise DuplicateRequest(change.idem_key)
    try:
        conn.execute(
            "INSERT INTO audit (platform, community, actor_id, action, target, value, text_value, idem_key,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                change.platform,
                change.community,
                change.actor_id,
                change.verb.value,
                change.target,
                change.value,
                change.text_value,
                change.idem_key,
                stamp(change.now),
            ),
        )
    except sqlite3.IntegrityError:
        raise DuplicateRequest(change.idem_key) from None
    verb = change.verb
    if verb is ModVerb.LANGUAGE:
        conn.execute(
            "INSERT INTO communities (platform, community, language) VALUES (?, ?, ?) "
            "ON CONFLICT (platform, community) DO UPDATE SET language = excluded.language",
            (change.platform, change.community, change.text_value),
        )
        return
    if verb is ModVerb.SET_DEFAULT:
        _set_policy(conn, change, COMMUNITY_DEFAULT, daily=_value(change), banned=None)
        return
    target = change.target
    if target is None:
        raise ValueError(f"{verb} needs a target user")
    if verb is ModVerb.GRANT:
        conn.execute(
            "INSERT INTO ledger (platform, community, user_id, kind, amount, day, actor_id, idem_key, created_at) "
            "VALUES (?, ?, ?, 'grant', ?, ?, ?, ?, ?)",
            (
                change.platform,
                change.community,
                target,
                _value(change),
                day_of(change.now),
                change.actor_id,
                change.idem_key,
                stamp(change.now),
            ),
        )
    elif verb is ModVerb.SET_DAILY:
        _set_policy(conn, change, target, daily=_value(change), banned=None)
    else:
        _set_policy(conn, change, target, daily=None, banned=verb is ModVerb.BAN)


def _value(change: ModChange) -> int:
    if change.value is None or change.value < 0:
        raise ValueError(f"{change.verb} needs a non-negative value")
    return change.value


def _set_policy(
    conn: sqlite3.Connection, change: ModChange, user_id: str, *, daily: int | None, banned: bool | None
) -> None:
    conn.execute(
        "INSERT INTO policies (platform, community, user_id, daily, banned, updated_at, updated_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (platform, community, user_id) DO UPDATE SET "
        " daily = COALESCE(excluded.daily, daily),"
        " banned = CASE WHEN ? IS NULL THEN banned ELSE excluded.banned END,"
        " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (
            change.platform,
            change.community,
            user_id,
            daily,
            int(bool(banned)),
            stamp(change.now),
            change.actor_id,
            None if banned is None else int(banned),
        ),
    )


def community_language(conn: sqlite3.Connection, platform: str, community: str) -> str | None:
    row = conn.execute(
        "SELECT language FROM communities WHERE platform = ? AND community = ?", (platform, community)
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def migrate_community(conn: sqlite3.Connection, platform: str, old: str, new: str) -> None:
    """A Telegram group became a supergroup: its rounds, credits, policies and settings move to the new id.
    What the new community already has (set after the upgrade) wins over the old one's."""
    conn.execute(
        "DELETE FROM policies WHERE platform = ? AND community = ? AND user_id IN "
        "(SELECT user_id FROM policies WHERE platform = ? AND community = ?)",
        (platform, old, platform, new),
    )
    conn.execute(
        "DELETE FROM communities WHERE platform = ? AND community = ? AND EXISTS "
        "(SELECT 1 FROM communities WHERE platform = ? AND community = ?)",
        (platform, old, platform, new),
    )
    for table in ("rounds", "ledger", "policies", "audit", "notices", "communities"):
        conn.execute(
            f"UPDATE {table} SET community = ? WHERE platform = ? AND community = ?",  # noqa: S608 - our names
            (new, platform, old),
        )
    for table in ("rounds", "notices", "round_messages"):
        conn.execute(
            f"UPDATE OR IGNORE {table} SET channel = ? WHERE platform = ? AND channel = ?",  # noqa: S608
            (new, platform, old),
        )


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
    return [
        TopUser(
            user_id=str(row["user_id"]),
            name=str(row["name"] or row["user_id"]),
            images=int(row["images"]),
            credits=int(row["credits"]),
        )
        for row in rows
    ]


def community_usage(conn: sqlite3.Connection, now: datetime, community: str | None) -> list[CommunityUsage]:
    today = day_of(now)
    month = today[:8] + "01"
    only = "AND community = ?" if community is not None else ""
    args: tuple[str, ...] = (today, today, month, *((community,) if community is not None else ()))
    rows = conn.execute(_COMMUNITY_USAGE.replace("{only}", only), args).fetchall()
    return [
        CommunityUsage(
            platform=str(row["platform"]),
            community=str(row["community"]),
            today_images=int(row["today_images"]),
            today_credits=int(row["today_credits"]),
            month_images=int(row["month_images"]),
            month_credits=int(row["month_credits"]),
            month_usd=float(row["month_usd"]),
        )
        for row in rows
    ]


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
