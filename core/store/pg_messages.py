"""Notices for later and the durable inbox of `PostgresStore`. Mixed into
`core.store.postgres.PostgresStore`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.events import ChannelKey, Platform
from core.records import InboxItem, PendingNotice
from core.store.pg_sql import INBOX_RETENTION, PgPool, actor_of
from core.store.rows import notice_from_row


class PgMessages(PgPool):
    # -- notices ----------------------------------------------------------------------------------------

    async def add_notice(
        self, key: ChannelKey, reply_to: str | None, text: str, now: datetime, user_id: str | None = None
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO notices (platform, community, channel, thread, reply_to, text, user_id, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (key.platform.value, key.community, key.channel, key.thread, reply_to, text, user_id, now),
            )

    async def pending_notices(self, platform: Platform) -> list[PendingNotice]:
        rows = await self._all(
            "SELECT * FROM notices WHERE platform = %s AND sent_at IS NULL ORDER BY id", (platform.value,)
        )
        return [notice_from_row(row) for row in rows]

    async def notice_sent(self, notice_id: int, now: datetime) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("UPDATE notices SET sent_at = %s WHERE id = %s", (now, notice_id))

    # -- inbox ------------------------------------------------------------------------------------------

    async def inbox_put(self, platform: Platform, items: Sequence[tuple[str, str]], now: datetime) -> None:
        if not items:
            return
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO inbox (platform, idem_key, payload, received_at, actor) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (platform, idem_key) DO NOTHING",
                [(platform.value, key, payload, now, actor_of(payload)) for key, payload in items],
            )
            await cursor.execute("SELECT pg_notify('easel_inbox', %s)", (platform.value,))

    async def inbox_done(self, platform: Platform, idem_key: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM inbox WHERE platform = %s AND idem_key = %s", (platform.value, idem_key))

    async def inbox_pending(self, platform: Platform, now: datetime) -> list[InboxItem]:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM inbox WHERE platform = %s AND received_at < %s", (platform.value, now - INBOX_RETENTION)
            )
            cursor = await conn.execute(
                "SELECT idem_key, payload FROM inbox WHERE platform = %s ORDER BY received_at, seq", (platform.value,)
            )
            return [InboxItem(idem_key=str(r["idem_key"]), payload=str(r["payload"])) for r in await cursor.fetchall()]
