"""What several workers share through PostgreSQL (`core.ports.FleetStore`): provider slot tickets, per-user
holds, inbox claims with per-user affinity, wake-ups (LISTEN/NOTIFY) and leader locks. `PostgresStore` inherits it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from datetime import datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from core.events import Platform
from core.records import (
    InboxItem,
)
from core.store.pg_sql import (
    CHANNELS,
    INBOX_CLAIM_LOCK,
    INBOX_RETENTION,
    LEADER_LOCKS,
    OPEN,
    SLOT_LOCK,
    USER_HOLD_LOCK,
    Conn,
    PgPool,
)

log = logging.getLogger(__name__)

VOID_EVERY = 2.0  # seconds between this process's sweeps for a gone worker's slot tickets


# -- several workers (`core.ports.FleetStore`) --------------------------------------------------------------
# Kept apart from the `Store` methods; `PostgresStore` below inherits them.


class PgFleet(PgPool):
    """Slot tickets, inbox claims, leader locks and LISTEN/NOTIFY wake-ups, mixed into `PostgresStore`."""

    url: str
    _leaders: dict[str, Conn]
    _signals: dict[str, asyncio.Event]
    _tickets: dict[int, asyncio.Event]  # a waiter's wake-up, by its slot ticket
    _granted: dict[int, None]  # tickets whose grant was announced lately (a grant may beat its waiter's event)
    _listener: asyncio.Task[None] | None
    _listening: asyncio.Event
    _voided_at: float = -VOID_EVERY  # when this process last dropped a gone worker's slot tickets (monotonic)

    # -- shared provider slots --------------------------------------------------------------------------

    async def slot_reset(self, owner: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM slot_tickets WHERE owner = %s", (owner,))
            await conn.execute("SELECT pg_notify('easel_slots', '')")  # rare: every waiter re-checks

    async def slot_enqueue(
        self, owner: str, capacity: int, queue_limit: int, now: datetime, stale_after: float
    ) -> tuple[int, int] | None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SLOT_LOCK,))
            await self._void_stale(conn, now, stale_after)
            cursor = await conn.execute("SELECT count(*) AS n FROM slot_tickets WHERE granted_at IS NULL")
            row = await cursor.fetchone()
            if row is not None and int(row["n"]) >= queue_limit:
                return None
            cursor = await conn.execute(
                "INSERT INTO slot_tickets (owner, enqueued_at) VALUES (%s, %s) RETURNING id", (owner, now)
            )
            inserted = await cursor.fetchone()
            assert inserted is not None
            ticket = int(inserted["id"])
            granted = await self._grant(conn, capacity, now, None, locked=True)
            return ticket, 0 if ticket in granted else await self._place(conn, ticket)

    async def slot_poll(self, owner: str, ticket: int, capacity: int, now: datetime, stale_after: float) -> int:
        async with self._pool.connection() as conn, conn.transaction():
            await self._grant(conn, capacity, now, stale_after)
            return await self._place(conn, ticket)

    async def slot_release(self, ticket: int, capacity: int, now: datetime, stale_after: float) -> None:
        self._tickets.pop(ticket, None)
        self._granted.pop(ticket, None)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM slot_tickets WHERE id = %s", (ticket,))
            await self._grant(conn, capacity, now, stale_after)

    def slot_announced(self, ticket: int) -> bool:
        return ticket in self._granted

    async def slot_granted(self, ticket: int) -> asyncio.Event:
        await self._ensure_listener()
        if ticket in self._granted:
            done = asyncio.Event()
            done.set()
            return done
        return self._tickets.setdefault(ticket, asyncio.Event())

    async def slot_counts(self) -> tuple[int, int]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(granted_at) AS granted, count(*) - count(granted_at) AS waiting FROM slot_tickets"
            )
            row = await cursor.fetchone()
        assert row is not None
        return int(row["granted"]), int(row["waiting"])

    async def _grant(
        self, conn: Conn, capacity: int, now: datetime, stale_after: float | None, *, locked: bool = False
    ) -> set[int]:
        """Under the fleet-wide slot lock: void the tickets of gone workers (when `stale_after` is given), then
        grant the oldest waiting tickets while fewer than `capacity` are granted, and announce which: only
        their waiters wake (waking every waiter at each grant costs the fleet waiters x grants queries).
        Returns the tickets granted now."""
        if not locked:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SLOT_LOCK,))
        await self._void_stale(conn, now, stale_after)
        cursor = await conn.execute(
            "UPDATE slot_tickets SET granted_at = %s WHERE id IN (SELECT id FROM slot_tickets "
            "WHERE granted_at IS NULL ORDER BY id "
            "LIMIT greatest(0, %s - (SELECT count(*) FROM slot_tickets WHERE granted_at IS NOT NULL))) "
            "RETURNING id",
            (now, capacity),
        )
        granted = {int(row["id"]) for row in await cursor.fetchall()}
        if granted:
            # A payload is limited to 8000 bytes; a longer list is announced as "everyone re-check".
            names = ",".join(str(ticket) for ticket in sorted(granted))
            await conn.execute("SELECT pg_notify('easel_slots', %s)", (names if len(names) < 7900 else "",))
        return granted

    async def _void_stale(self, conn: Conn, now: datetime, stale_after: float | None) -> None:
        """Drop the tickets of workers silent for `stale_after` seconds. At most every VOID_EVERY seconds per
        process: it is a scan, and a dead worker's slots may come back a moment later without harm."""
        if stale_after is None or time.monotonic() - self._voided_at < VOID_EVERY:
            return
        self._voided_at = time.monotonic()
        await conn.execute(
            "DELETE FROM slot_tickets t WHERE NOT EXISTS "
            "(SELECT 1 FROM workers w WHERE w.owner = t.owner AND w.heartbeat_at >= %s)",
            (now - timedelta(seconds=stale_after),),
        )

    @staticmethod
    async def _place(conn: Conn, ticket: int) -> int:
        cursor = await conn.execute(
            "SELECT CASE WHEN t.granted_at IS NOT NULL THEN 0 ELSE (SELECT count(*) FROM slot_tickets w "
            "WHERE w.granted_at IS NULL AND w.id <= t.id) END AS place FROM slot_tickets t WHERE t.id = %s",
            (ticket,),
        )
        row = await cursor.fetchone()
        return -1 if row is None else int(row["place"])

    # -- the per-user cap ------------------------------------------------------------------------------

    async def user_hold(
        self, user: tuple[str, str], round_id: int, owner: str, limit: int, now: datetime, stale_after: float
    ) -> tuple[int | None, int]:
        platform, user_id = user
        cutoff = now - timedelta(seconds=stale_after)
        async with self._pool.connection() as conn, conn.transaction():
            # Two workers checking the same user at once must not both see room: serialise per user.
            key = f"{platform}:{user_id}"
            await conn.execute("SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))", (USER_HOLD_LOCK, key))
            await conn.execute(
                "DELETE FROM user_holds h WHERE platform = %s AND user_id = %s AND ("
                " NOT EXISTS (SELECT 1 FROM workers w WHERE w.owner = h.owner AND w.heartbeat_at >= %s)"
                " OR NOT EXISTS (SELECT 1 FROM rounds r WHERE r.id = h.round_id AND r.status = ANY(%s)))",
                (platform, user_id, cutoff, OPEN),
            )
            cursor = await conn.execute(
                "SELECT count(*) AS n FROM user_holds WHERE platform = %s AND user_id = %s", (platform, user_id)
            )
            row = await cursor.fetchone()
            held = int(row["n"]) if row is not None else 0
            if held >= limit:
                return None, held
            cursor = await conn.execute(
                "INSERT INTO user_holds (platform, user_id, round_id, owner, held_at) VALUES (%s, %s, %s, %s, %s) "
                "RETURNING id",
                (platform, user_id, round_id, owner, now),
            )
            inserted = await cursor.fetchone()
            assert inserted is not None
            return int(inserted["id"]), held + 1

    async def user_release(self, hold: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM user_holds WHERE id = %s", (hold,))

    async def pace(self, name: str, per_second: float, burst: float) -> float:
        # A leaky bucket on the server's clock (workers' clocks may differ): drain since the last send, add
        # this one, and wait for whatever is above the burst. Concurrent senders serialise on the row.
        row = await self._one(
            "INSERT INTO rate_buckets (name, level, at) VALUES (%s, 1, clock_timestamp()) "
            "ON CONFLICT (name) DO UPDATE SET at = clock_timestamp(), level = 1 + greatest(0, rate_buckets.level "
            "- %s * extract(epoch FROM clock_timestamp() - rate_buckets.at)) RETURNING level",
            (name, per_second),
        )
        level = float(row["level"]) if row is not None else 1.0
        return max(0.0, (level - burst) / per_second)

    async def live_workers(self, now: datetime, stale_after: float) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) AS n FROM workers WHERE heartbeat_at >= %s", (now - timedelta(seconds=stale_after),)
            )
            row = await cursor.fetchone()
        return int(row["n"]) if row is not None else 0

    async def user_reset(self, owner: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM user_holds WHERE owner = %s", (owner,))

    # -- inbox claims -----------------------------------------------------------------------------------

    async def inbox_claim(
        self, platform: Platform, owner: str, limit: int, now: datetime, stale_after: float = 30.0
    ) -> list[InboxItem]:
        if limit <= 0:
            return []
        cutoff = now - timedelta(seconds=stale_after)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (INBOX_CLAIM_LOCK,))
            cursor = await conn.execute(
                "WITH live AS (SELECT owner FROM workers WHERE heartbeat_at >= %(cutoff)s), "
                "busy AS (SELECT DISTINCT actor FROM inbox WHERE platform = %(p)s AND actor IS NOT NULL "
                "  AND claimed_by <> %(owner)s AND claimed_by IN (SELECT owner FROM live)) "
                "UPDATE inbox SET claimed_by = %(owner)s WHERE (platform, idem_key) IN ("
                "  SELECT platform, idem_key FROM inbox i WHERE i.platform = %(p)s AND i.received_at >= %(kept)s"
                "  AND (i.claimed_by IS NULL OR i.claimed_by NOT IN (SELECT owner FROM live))"
                "  AND (i.actor IS NULL OR i.actor NOT IN (SELECT actor FROM busy))"
                "  ORDER BY i.received_at, i.seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                "RETURNING idem_key, payload, received_at, seq",
                {"cutoff": cutoff, "p": platform.value, "owner": owner, "kept": now - INBOX_RETENTION, "limit": limit},
            )
            rows = sorted(await cursor.fetchall(), key=lambda r: (r["received_at"], r["seq"]))
        return [InboxItem(idem_key=str(r["idem_key"]), payload=str(r["payload"])) for r in rows]

    # -- wake-ups between workers -----------------------------------------------------------------------

    async def signal(self, channel: str) -> asyncio.Event:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        await self._ensure_listener()
        return self._signals.setdefault(channel, asyncio.Event())

    async def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listening = asyncio.Event()
            self._listener = asyncio.create_task(self._listen(), name="easel-pg-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._listening.wait()), 5.0)

    def _wake(self, channel: str) -> None:
        event = self._signals.pop(channel, None)
        if event is not None:
            event.set()
        if channel == "slots":  # a grant not named (a reset, a long list, a lost connection): all re-check
            for ticket in list(self._tickets):
                self._tickets.pop(ticket).set()

    def _announced(self, payload: str) -> None:
        """Granted tickets named by a notification: wake their waiters; remember them for waiters not yet
        listening (the grant may be announced before its waiter takes its event)."""
        for part in payload.split(","):
            ticket = int(part)
            self._granted[ticket] = None
            event = self._tickets.pop(ticket, None)
            if event is not None:
                event.set()
        while len(self._granted) > 10_000:
            del self._granted[next(iter(self._granted))]

    async def _listen(self) -> None:
        """One connection per process LISTENs on every channel; each notification sets that channel's event
        (and replaces it). When the connection fails everyone is woken (they re-check) and it reconnects."""
        pause = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    for name in CHANNELS.values():
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                    self._listening.set()
                    pause = 0.5
                    names = {v: k for k, v in CHANNELS.items()}
                    async for note in conn.notifies():
                        channel = names.get(note.channel, "")
                        if channel == "slots" and note.payload:
                            self._announced(note.payload)
                        else:
                            self._wake(channel)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("listening for other workers failed (%s); retrying in %.1f s", type(error).__name__, pause)
            for channel in {*self._signals, "slots"}:
                self._wake(channel)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)

    # -- leader locks -----------------------------------------------------------------------------------

    async def try_lead(self, name: str) -> bool:
        conn = self._leaders.get(name)
        if conn is not None:
            try:
                await conn.execute("SELECT 1")
                return True
            except psycopg.Error:
                await self.resign(name)
                return False
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,  # a lost peer is noticed
            )
        except psycopg.Error:
            return False
        key = LEADER_LOCKS + zlib.crc32(name.encode())
        try:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS held", (key,))
            row = await cursor.fetchone()
        except psycopg.Error:
            await conn.close()
            return False
        if row is None or not row["held"]:
            await conn.close()
            return False
        self._leaders[name] = conn
        return True

    async def resign(self, name: str) -> None:
        conn = self._leaders.pop(name, None)
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()  # the session ends: its advisory lock is released
