"""The credits side of `PostgresStore`: balances, moderation with its audit row, the day's spend, community
settings and usage reports. Mixed into `core.store.postgres.PostgresStore`."""

from __future__ import annotations

from datetime import datetime

from psycopg import sql

from core.errors import DuplicateRequest
from core.events import Platform
from core.records import Balance, CommunityUsage, ModChange, TopUser, UsageTotals, day_of
from core.store.pg_sql import PgPool, apply_change, balance_of, spend_on
from core.store.rows import community_usage_from_row, top_user_from_row


class PgCredits(PgPool):
    # -- credits and moderation ---------------------------------------------------------------------------

    async def balance(
        self, platform: Platform, community: str, user_id: str, day: str, default_daily: int
    ) -> Balance:
        async with self._pool.connection() as conn, conn.transaction():
            return await balance_of(conn, platform.value, community, user_id, day, default_daily)

    async def moderate(self, change: ModChange) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO audit (platform, community, actor_id, action, target, value, text_value, idem_key,"
                " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (idem_key) DO NOTHING "
                "RETURNING id",
                (
                    change.platform,
                    change.community,
                    change.actor_id,
                    change.verb.value,
                    change.target,
                    change.value,
                    change.text_value,
                    change.idem_key,
                    change.now,
                ),
            )
            if await cursor.fetchone() is None:
                raise DuplicateRequest(change.idem_key)
            await apply_change(conn, change)

    async def granted_by(self, platform: Platform, community: str, actor_id: str, day: str) -> int:
        row = await self._one(
            "SELECT COALESCE(SUM(amount), 0) AS total FROM ledger "
            "WHERE kind = 'grant' AND platform = %s AND community = %s AND actor_id = %s AND day = %s",
            (platform.value, community, actor_id, day),
        )
        return int(row["total"]) if row else 0

    async def spend_on(self, day: str) -> float:
        async with self._pool.connection() as conn:
            return await spend_on(conn, day)

    async def community_language(self, platform: Platform, community: str) -> str | None:
        row = await self._one(
            "SELECT language FROM communities WHERE platform = %s AND community = %s", (platform.value, community)
        )
        return None if row is None or row["language"] is None else str(row["language"])

    async def migrate_community(self, platform: Platform, old: str, new: str) -> None:
        p = platform.value
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM policies WHERE platform = %s AND community = %s AND user_id IN "
                "(SELECT user_id FROM policies WHERE platform = %s AND community = %s)",
                (p, old, p, new),
            )
            await conn.execute(
                "DELETE FROM communities WHERE platform = %s AND community = %s AND EXISTS "
                "(SELECT 1 FROM communities WHERE platform = %s AND community = %s)",
                (p, old, p, new),
            )
            for table in ("rounds", "ledger", "policies", "audit", "notices", "communities"):
                await conn.execute(
                    sql.SQL("UPDATE {} SET community = %s WHERE platform = %s AND community = %s").format(
                        sql.Identifier(table)
                    ),
                    (new, p, old),
                )
            for table in ("rounds", "notices"):
                await conn.execute(
                    sql.SQL("UPDATE {} SET channel = %s WHERE platform = %s AND channel = %s").format(
                        sql.Identifier(table)
                    ),
                    (new, p, old),
                )
            await conn.execute(
                "UPDATE round_messages m SET channel = %s WHERE platform = %s AND channel = %s AND NOT EXISTS "
                "(SELECT 1 FROM round_messages o WHERE o.platform = m.platform AND o.channel = %s "
                " AND o.message_id = m.message_id)",
                (new, p, old, new),
            )

    # -- reports ----------------------------------------------------------------------------------------

    async def usage_totals(
        self, platform: Platform, community: str, since: str, user_id: str | None = None
    ) -> UsageTotals:
        row = await self._one(
            "SELECT COUNT(*) FILTER (WHERE r.status = 'delivered') AS images,"
            " COALESCE(SUM(r.est_usd), 0) AS usd,"
            " COALESCE(SUM((SELECT COALESCE(SUM(CASE l.kind WHEN 'reserve' THEN l.amount ELSE -l.amount END), 0)"
            "   FROM ledger l WHERE l.round_id = r.id)), 0) AS credits "
            "FROM rounds r WHERE r.platform = %s AND r.community = %s AND r.day >= %s "
            "AND (%s::text IS NULL OR r.user_id = %s)",
            (platform.value, community, since, user_id, user_id),
        )
        assert row is not None
        return UsageTotals(images=int(row["images"]), credits=int(row["credits"]), usd=float(row["usd"]))

    async def top_users(self, platform: Platform, community: str, since: str, limit: int) -> list[TopUser]:
        rows = await self._all(
            "SELECT user_id, MAX(user_name) AS name, COUNT(*) AS images, SUM(cost) AS credits FROM rounds "
            "WHERE platform = %s AND community = %s AND day >= %s AND status = 'delivered' "
            "GROUP BY user_id ORDER BY credits DESC, images DESC, user_id LIMIT %s",
            (platform.value, community, since, limit),
        )
        return [top_user_from_row(row) for row in rows]

    async def community_usage(self, now: datetime, community: str | None = None) -> list[CommunityUsage]:
        today = day_of(now)
        rows = await self._all(
            "SELECT platform, community,"
            " COUNT(*) FILTER (WHERE day = %s AND status = 'delivered') AS today_images,"
            " COALESCE(SUM(cost) FILTER (WHERE day = %s AND status = 'delivered'), 0) AS today_credits,"
            " COUNT(*) FILTER (WHERE status = 'delivered') AS month_images,"
            " COALESCE(SUM(cost) FILTER (WHERE status = 'delivered'), 0) AS month_credits,"
            " COALESCE(SUM(est_usd), 0) AS month_usd "
            "FROM rounds WHERE day >= %s AND (%s::text IS NULL OR community = %s) GROUP BY platform, community "
            "ORDER BY month_credits DESC, platform, community",
            (today, today, today[:8] + "01", community, community),
        )
        return [community_usage_from_row(row) for row in rows]
