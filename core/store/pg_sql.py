"""The SQL helpers behind `PostgresStore`: each takes a connection inside the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from core.events import ChannelKey
from core.records import (
    COMMUNITY_DEFAULT,
    FORGOTTEN_PROMPT,
    Balance,
    Facts,
    ModChange,
    ModVerb,
    Round,
    day_of,
)
from core.store.rows import (
    OPEN_STATE_NAMES,
    SPENDING_STATE_NAMES,
    fact_columns,
    round_from_row,
)

Conn = AsyncConnection[DictRow]
SLOT_LOCK = 0x45A5E2  # pg_advisory_xact_lock key: one slot grant at a time, fleet-wide
USER_HOLD_LOCK = 0x45A5E4  # with a hash of the user: one cap check at a time per user, fleet-wide
INBOX_CLAIM_LOCK = 0x45A5E3  # one inbox claim at a time (the per-user affinity check must not race)
LEADER_LOCKS = 0x45A5_0000_0000  # + crc32(name): session-level leader locks
CHANNELS = {"slots": "easel_slots", "inbox": "easel_inbox"}
INBOX_RETENTION = timedelta(hours=24)
DELETED_PROMPT = FORGOTTEN_PROMPT
OPEN = list(OPEN_STATE_NAMES)
SPENDING = list(SPENDING_STATE_NAMES)


async def fetch_one(conn: Conn, query: Any, params: Sequence[Any]) -> DictRow | None:
    cursor = await conn.execute(query, params)
    return await cursor.fetchone()


async def lock_round(conn: Conn, round_id: int) -> Round | None:
    row = await fetch_one(conn, "SELECT * FROM rounds WHERE id = %s FOR UPDATE", (round_id,))
    return round_from_row(row) if row else None


async def update_round(conn: Conn, round_id: int, now: datetime, columns: dict[str, Any]) -> None:
    assignments: list[sql.Composable] = [sql.SQL("{} = %s").format(sql.Identifier(name)) for name in columns]
    assignments.append(sql.SQL("updated_at = %s"))
    query = sql.SQL("UPDATE rounds SET {} WHERE id = %s").format(sql.SQL(", ").join(assignments))
    await conn.execute(query, (*columns.values(), now, round_id))


async def write_facts(conn: Conn, item: Round, facts: Facts | None, now: datetime, columns: dict[str, Any]) -> None:
    await update_round(conn, item.id, now, {**fact_columns(facts), **columns})
    if facts is not None and facts.progress_message is not None:
        await attach_messages_to(conn, item.id, item.key, [facts.progress_message], "progress")


async def attach_messages_to(conn: Conn, round_id: int, key: ChannelKey, message_ids: Sequence[str], role: str) -> None:
    for message_id in message_ids:
        await conn.execute(
            "INSERT INTO round_messages (platform, channel, message_id, round_id, role) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (platform, channel, message_id) DO UPDATE SET round_id = excluded.round_id, "
            "role = excluded.role",
            (key.platform.value, key.channel, message_id, round_id, role),
        )


async def derived_rounds_of(conn: Conn, round_id: int) -> list[Round]:
    cursor = await conn.execute(
        "SELECT d.* FROM rounds s JOIN rounds d ON d.platform = s.platform AND d.community = s.community "
        " AND d.parent_id IS NOT DISTINCT FROM s.parent_id AND d.prompt = s.prompt AND d.id > s.id "
        " AND d.kind = 'reroll' WHERE s.id = %s ORDER BY d.id",
        (round_id,),
    )
    return [round_from_row(row) for row in await cursor.fetchall()]


async def balance_of(conn: Conn, platform: str, community: str, user_id: str, day: str, default_daily: int) -> Balance:
    used = await fetch_one(
        conn,
        "SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount WHEN 'refund' THEN -amount END), 0) AS used,"
        " COALESCE(SUM(amount) FILTER (WHERE kind = 'grant'), 0) AS granted "
        "FROM ledger WHERE platform = %s AND community = %s AND user_id = %s AND day = %s",
        (platform, community, user_id, day),
    )
    cursor = await conn.execute(
        "SELECT user_id, daily, banned FROM policies WHERE platform = %s AND community = %s AND user_id IN (%s, %s)",
        (platform, community, user_id, COMMUNITY_DEFAULT),
    )
    rows = {row["user_id"]: row for row in await cursor.fetchall()}
    own, default = rows.get(user_id), rows.get(COMMUNITY_DEFAULT)
    daily = default_daily
    if default is not None and default["daily"] is not None:
        daily = int(default["daily"])
    if own is not None and own["daily"] is not None:
        daily = int(own["daily"])
    assert used is not None
    return Balance(
        daily=daily,
        granted=int(used["granted"]),
        used=int(used["used"]),
        banned=bool(own is not None and own["banned"]),
    )


async def spend_on(conn: Conn, day: str) -> float:
    row = await fetch_one(
        conn,
        "SELECT COALESCE(SUM(est_usd), 0) AS usd FROM rounds WHERE day = %s AND status = ANY(%s)",
        (day, SPENDING),
    )
    return float(row["usd"]) if row else 0.0


async def apply_change(conn: Conn, change: ModChange) -> None:
    verb = change.verb
    if verb is ModVerb.LANGUAGE:
        await conn.execute(
            "INSERT INTO communities (platform, community, language) VALUES (%s, %s, %s) "
            "ON CONFLICT (platform, community) DO UPDATE SET language = excluded.language",
            (change.platform, change.community, change.text_value),
        )
        return
    if verb is ModVerb.SET_DEFAULT:
        await set_policy(conn, change, COMMUNITY_DEFAULT, daily=change_value(change), banned=None)
        return
    target = change.target
    if target is None:
        raise ValueError(f"{verb} needs a target user")
    if verb is ModVerb.GRANT:
        await conn.execute(
            "INSERT INTO ledger (platform, community, user_id, kind, amount, day, actor_id, idem_key, created_at) "
            "VALUES (%s, %s, %s, 'grant', %s, %s, %s, %s, %s)",
            (
                change.platform,
                change.community,
                target,
                change_value(change),
                day_of(change.now),
                change.actor_id,
                change.idem_key,
                change.now,
            ),
        )
    elif verb is ModVerb.SET_DAILY:
        await set_policy(conn, change, target, daily=change_value(change), banned=None)
    else:
        await set_policy(conn, change, target, daily=None, banned=verb is ModVerb.BAN)


def change_value(change: ModChange) -> int:
    if change.value is None or change.value < 0:
        raise ValueError(f"{change.verb} needs a non-negative value")
    return change.value


async def set_policy(conn: Conn, change: ModChange, user_id: str, *, daily: int | None, banned: bool | None) -> None:
    await conn.execute(
        "INSERT INTO policies (platform, community, user_id, daily, banned, updated_at, updated_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (platform, community, user_id) DO UPDATE SET "
        " daily = COALESCE(excluded.daily, policies.daily),"
        " banned = CASE WHEN %s::integer IS NULL THEN policies.banned ELSE excluded.banned END,"
        " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (
            change.platform,
            change.community,
            user_id,
            daily,
            int(bool(banned)),
            change.now,
            change.actor_id,
            None if banned is None else int(banned),
        ),
    )


def actor_of(payload: str) -> str | None:
    """Who sent a platform update, when its JSON says so in the usual shape (`{"message": {"from": {"id":
    ...}}}`, likewise callback queries): for per-user affinity of inbox claims. None when unknown."""
    try:
        update = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(update, dict):
        return None
    for value in update.values():
        if isinstance(value, dict) and isinstance(value.get("from"), dict) and "id" in value["from"]:
            return str(value["from"]["id"])
    return None


class PgPool:
    """The connection pool and two read helpers, shared by `PostgresStore`'s parts."""

    _pool: AsyncConnectionPool[Conn]

    async def _one(self, query: Any, params: Sequence[Any] = ()) -> DictRow | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchone()

    async def _all(self, query: Any, params: Sequence[Any] = ()) -> list[DictRow]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()
