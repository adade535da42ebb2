"""Credits and the ledger: reserve -> commit | refund, policies and moderation.

Functions here take a `sqlite3.Connection` that is already inside a `BEGIN IMMEDIATE` transaction (the
store's single writer), so a balance check and the reserve that follows it cannot interleave with another
writer. The ledger is append-only; a balance is always computed from it, never kept as a counter:

    left today = daily allowance + grants today - reserves today + refunds of today's reserves
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.errors import Banned, DuplicateRequest, OverQuota

COMMUNITY_DEFAULT = "*"


def day_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def next_reset(moment: datetime) -> datetime:
    start = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Policy:
    daily: int
    banned: bool
    custom: bool  # a moderator set this user's daily credits


@dataclass(frozen=True, slots=True)
class Balance:
    daily: int
    granted: int
    used: int
    banned: bool

    @property
    def left(self) -> int:
        return max(0, self.daily + self.granted - self.used)


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
        daily = default["daily"]
    custom = own is not None and own["daily"] is not None
    if custom:
        assert own is not None
        daily = own["daily"]
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
    return Balance(daily=pol.daily, granted=row["granted"], used=row["used"], banned=pol.banned)


def reserve(
    conn: sqlite3.Connection,
    *,
    round_id: int,
    platform: str,
    community: str,
    user_id: str,
    cost: int,
    now: datetime,
    default_daily: int,
) -> Balance:
    """Charge `cost` for `round_id` if the user may spend it; returns the balance after the charge."""
    day = day_of(now)
    bal = balance(conn, platform, community, user_id, day, default_daily)
    if bal.banned:
        raise Banned("A moderator has blocked you from making images here. Ask them if you think it's a mistake.")
    if bal.left < cost:
        reset = next_reset(now)
        credits = "credit" if cost == 1 else "credits"
        raise OverQuota(
            f"That needs {cost} {credits} and you have {bal.left} credits left today. "
            f"Your credits reset at {reset:%H:%M} UTC (in {_until(reset - now)}). "
            "A lower quality or square image costs less.",
            left=bal.left,
            resets_at=reset,
        )
    conn.execute(
        "INSERT INTO ledger (round_id, platform, community, user_id, kind, amount, day, created_at) "
        "VALUES (?, ?, ?, ?, 'reserve', ?, ?, ?)",
        (round_id, platform, community, user_id, cost, day, now.isoformat()),
    )
    return Balance(daily=bal.daily, granted=bal.granted, used=bal.used + cost, banned=False)


def refund(conn: sqlite3.Connection, round_id: int, now: datetime) -> int:
    """Give back a round's reserve, once. The refund counts on the reserve's day. Returns the amount."""
    row = conn.execute(
        "SELECT platform, community, user_id, amount, day FROM ledger WHERE round_id = ? AND kind = 'reserve'",
        (round_id,),
    ).fetchone()
    if row is None:
        return 0
    cursor = conn.execute(
        "INSERT OR IGNORE INTO ledger (round_id, platform, community, user_id, kind, amount, day, created_at) "
        "VALUES (?, ?, ?, ?, 'refund', ?, ?, ?)",
        (
            round_id,
            row["platform"],
            row["community"],
            row["user_id"],
            row["amount"],
            row["day"],
            now.isoformat(),
        ),
    )
    return int(row["amount"]) if cursor.rowcount else 0


def audit(
    conn: sqlite3.Connection,
    *,
    platform: str,
    community: str,
    actor_id: str,
    action: str,
    target: str | None,
    value: int | None,
    idem_key: str,
    now: datetime,
) -> None:
    """Record a moderator action; a repeated idempotency key means a redelivered command: do nothing."""
    try:
        conn.execute(
            "INSERT INTO audit (platform, community, actor_id, action, target, value, idem_key, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (platform, community, actor_id, action, target, value, idem_key, now.isoformat()),
        )
    except sqlite3.IntegrityError:
        raise DuplicateRequest(idem_key) from None


def set_policy(
    conn: sqlite3.Connection,
    *,
    platform: str,
    community: str,
    user_id: str,
    actor_id: str,
    now: datetime,
    daily: int | None = None,
    banned: bool | None = None,
) -> None:
    conn.execute(
        "INSERT INTO policies (platform, community, user_id, daily, banned, updated_at, updated_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (platform, community, user_id) DO UPDATE SET "
        " daily = COALESCE(excluded.daily, daily),"
        " banned = CASE WHEN ? IS NULL THEN banned ELSE excluded.banned END,"
        " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (platform, community, user_id, daily, int(bool(banned)), now.isoformat(), actor_id, banned),
    )


def grant(
    conn: sqlite3.Connection,
    *,
    platform: str,
    community: str,
    user_id: str,
    amount: int,
    actor_id: str,
    idem_key: str,
    now: datetime,
) -> None:
    conn.execute(
        "INSERT INTO ledger (platform, community, user_id, kind, amount, day, actor_id, idem_key, created_at) "
        "VALUES (?, ?, ?, 'grant', ?, ?, ?, ?, ?)",
        (platform, community, user_id, amount, day_of(now), actor_id, idem_key, now.isoformat()),
    )


def _until(delta: timedelta) -> str:
    minutes = max(1, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
