"""The SQLite statements of the ledger and moderation: balances computed from the append-only ledger, the
reserve (a balance check and its charge in one transaction), policies, grants and the audit trail.

    left on a day = daily allowance + grants that day - reserves that day + refunds of that day's reserves

(a refund is written on its reserve's day); `core.store.sqlite_sql` writes refunds when a round ends."""

from __future__ import annotations

import sqlite3

from core.errors import Banned, BudgetExhausted, DuplicateRequest, OverQuota, StoreError
from core.records import (
    COMMUNITY_DEFAULT,
    Balance,
    ModChange,
    ModVerb,
    Policy,
    Reservation,
    RoundState,
    day_of,
    next_reset,
)
from core.store.rows import (
    stamp,
)
from core.store.sqlite_sql import SPENDING, must_get, update_round

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
    item = must_get(conn, req.round_id)
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
    update_round(
        conn, item.id, req.now, {"status": RoundState.QUEUED.value, "cost": req.cost, "est_usd": req.est_usd}
    )
    return Balance(daily=bal.daily, granted=bal.granted, used=bal.used + req.cost, banned=False)


def spend_on(conn: sqlite3.Connection, day: str) -> float:
    row = conn.execute(
        f"SELECT COALESCE(SUM(est_usd), 0) FROM rounds WHERE day = ? AND status IN ({SPENDING})",  # noqa: S608
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


