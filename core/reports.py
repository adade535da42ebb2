"""Usage reports as plain text: images, credits and estimated spend, today and this month."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from core.quotas import day_of

_TOTALS = (
    "SELECT COUNT(DISTINCT CASE WHEN r.status = 'delivered' THEN r.id END) AS images,"
    " COALESCE(SUM(CASE WHEN l.kind = 'reserve' THEN l.amount WHEN l.kind = 'refund' THEN -l.amount END), 0)"
    "  AS credits "
    "FROM rounds r LEFT JOIN ledger l ON l.round_id = r.id "
    "WHERE r.platform = ? AND r.community = ? AND r.day >= ? {user}"
)
_SPEND = "SELECT COALESCE(SUM(est_usd), 0) FROM rounds WHERE platform = ? AND community = ? AND day >= ? {user}"


_OPERATOR = (
    "SELECT platform, community,"
    " SUM(CASE WHEN day = ? AND status = 'delivered' THEN 1 ELSE 0 END) AS today_images,"
    " SUM(CASE WHEN day = ? AND status = 'delivered' THEN cost ELSE 0 END) AS today_credits,"
    " SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END) AS month_images,"
    " SUM(CASE WHEN status = 'delivered' THEN cost ELSE 0 END) AS month_credits,"
    " SUM(est_usd) AS month_usd "
    "FROM rounds WHERE day >= ? {where} GROUP BY platform, community ORDER BY month_credits DESC"
)


def _period(conn: sqlite3.Connection, platform: str, community: str, since: str, user_id: str | None) -> str:
    extra = "AND r.user_id = ?" if user_id else ""
    args: tuple[str, ...] = (platform, community, since) + ((user_id,) if user_id else ())
    row = conn.execute(_TOTALS.format(user=extra), args).fetchone()
    spend = conn.execute(_SPEND.format(user=extra.replace("r.", "")), args).fetchone()[0]
    return f"{row['images']} images, {row['credits']} credits, ~${spend:.2f}"


def user_usage(conn: sqlite3.Connection, platform: str, community: str, user_id: str, now: datetime) -> str:
    today, month = day_of(now), day_of(now)[:8] + "01"
    return (
        f"Your usage here — today: {_period(conn, platform, community, today, user_id)}; "
        f"this month: {_period(conn, platform, community, month, user_id)}."
    )


def community_usage(conn: sqlite3.Connection, platform: str, community: str, now: datetime) -> str:
    today, month = day_of(now), day_of(now)[:8] + "01"
    lines = [
        f"Usage here — today: {_period(conn, platform, community, today, None)}.",
        f"This month: {_period(conn, platform, community, month, None)}.",
    ]
    top = conn.execute(
        "SELECT r.user_id, MAX(r.user_name) AS name, COUNT(*) AS images, SUM(r.cost) AS credits "
        "FROM rounds r WHERE r.platform = ? AND r.community = ? AND r.day >= ? AND r.status = 'delivered' "
        "GROUP BY r.user_id ORDER BY credits DESC, images DESC LIMIT 5",
        (platform, community, month),
    ).fetchall()
    if top:
        lines.append(
            "Top this month: "
            + ", ".join(
                f"{row['name'] or row['user_id']} {row['credits']} credits ({row['images']} images)" for row in top
            )
            + "."
        )
    return "\n".join(lines)


def operator_usage(conn: sqlite3.Connection, now: datetime, community: str | None = None) -> str:
    """Every community (or one) for `easel usage`: a fixed-width table."""
    month = day_of(now)[:8] + "01"
    args: tuple[str, ...] = (day_of(now), day_of(now), month)
    where = ""
    if community:
        where = "AND community = ?"
        args = (*args, community)
    rows = conn.execute(_OPERATOR.format(where=where), args).fetchall()
    header = (
        f"{'platform':<9} {'community':<22} {'today img':>9} {'today cr':>8} {'month img':>9} "
        f"{'month cr':>8} {'month $':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['platform']:<9} {row['community'][:22]:<22} {row['today_images']:>9} {row['today_credits']:>8} "
            f"{row['month_images']:>9} {row['month_credits']:>8} {row['month_usd'] or 0:>9.2f}"
        )
    if not rows:
        lines.append("(no rounds this month)")
    return "\n".join(lines)
