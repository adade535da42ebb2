"""`PostgresStore`: the store port (`core.ports.Store`) on PostgreSQL 15+, shared by several worker processes.

psycopg 3 with its async pool. Every method is one short transaction (READ COMMITTED). Writers that must
not interleave take locks first, then read:

- a round's life (reserve, transition, deliver, finish) locks the round row (`SELECT ... FOR UPDATE`);
- a reserve also takes a transaction-scoped advisory lock on the user's balance (platform, community, user),
  and when a budget is set one on the day's spend, always in that order, so a balance check and the reserve
  that follows it cannot race another worker's (the statements after the lock see every commit before it);
- a new round takes an advisory lock on its channel for its number;
- adopting rounds skips rows another adopter holds (`FOR UPDATE SKIP LOCKED`).

The ledger's invariants are constraints and triggers in the schema (`core.store.pg_migrations`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core.errors import Banned, BudgetExhausted, DuplicateRequest, OverQuota, StoreError
from core.events import ChannelKey, Platform, UserRef
from core.records import (
    OPEN_STATES,
    Balance,
    Facts,
    Forgotten,
    NewRound,
    Reservation,
    Round,
    RoundState,
    day_of,
    next_reset,
)
from core.store import pg_migrations
from core.store.pg_credits import PgCredits
from core.store.pg_fleet import PgFleet
from core.store.pg_messages import PgMessages
from core.store.pg_sql import (
    DELETED_PROMPT,
    OPEN,
    Conn,
    attach_messages_to,
    balance_of,
    derived_rounds_of,
    fetch_one,
    lock_round,
    spend_on,
    update_round,
    write_facts,
)
from core.store.rows import (
    FINAL_STATES,
    prompt_snippet,
    round_from_row,
    shas_from_column,
    shas_to_column,
)

log = logging.getLogger(__name__)


class PostgresStore(PgFleet, PgCredits, PgMessages):
    """Open with `async with PostgresStore("postgresql://...") as store:`; migrations run on open."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.url = url
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row},
            name="easel-store",
        )
        self._leaders: dict[str, Conn] = {}
        self._signals: dict[str, asyncio.Event] = {}
        self._tickets: dict[int, asyncio.Event] = {}
        self._granted: dict[int, None] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def __aenter__(self) -> PostgresStore:
        await self._pool.open(wait=True, timeout=30)
        try:
            async with self._pool.connection() as conn:
                await pg_migrations.apply(conn)
        except BaseException:
            await self._pool.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for name in list(self._leaders):
            await self.resign(name)
        await self._pool.close()

    # -- lifecycle and health ---------------------------------------------------------------------------

    async def writable(self) -> bool:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("UPDATE meta SET value = value WHERE key = 'schema'")
        except (psycopg.Error, StoreError, TimeoutError):
            return False
        return True

    async def checkpoint(self) -> None:
        """After erasing data: vacuum the tables that hold text, so dead row versions do not keep it."""
        async with self._pool.connection() as conn:
            await conn.execute("VACUUM rounds, notices, users, inbox")

    async def backup(self, target: Path) -> None:
        raise StoreError("PostgreSQL is backed up with its own tools (pg_dump, base backups), not `easel db backup`")

    async def safety_salt(self) -> str:
        row = await self._one("SELECT value FROM meta WHERE key = 'safety_salt'")
        if row is None:
            raise StoreError("the database has no safety salt")
        return str(row["value"])

    # -- users ------------------------------------------------------------------------------------------

    async def remember_user(
        self, platform: Platform, user_id: str, username: str | None, display_name: str, now: datetime
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO users (platform, user_id, username, display_name, seen_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (platform, user_id) DO UPDATE SET username = excluded.username, "
                "display_name = excluded.display_name, seen_at = excluded.seen_at",
                (platform.value, user_id, username.lstrip("@").lower() if username else None, display_name, now),
            )

    async def find_user(self, platform: Platform, ref: UserRef) -> tuple[str, str] | None:
        if ref.user_id is not None:
            row = await self._one(
                "SELECT user_id, display_name FROM users WHERE platform = %s AND user_id = %s",
                (platform.value, ref.user_id),
            )
        else:
            name = (ref.username or "").lstrip("@")
            if not name:
                return None
            row = await self._one(
                "SELECT user_id, display_name FROM users WHERE platform = %s AND lower(username) = lower(%s) "
                "ORDER BY seen_at DESC LIMIT 1",
                (platform.value, name),
            )
        if row is None:
            return None
        return str(row["user_id"]), str(row["display_name"] or row["user_id"])

    # -- rounds -----------------------------------------------------------------------------------------

    async def create_round(self, new: NewRound, now: datetime) -> Round:
        if new.state not in (RoundState.REQUESTED, RoundState.REFUSED):
            raise ValueError(f"a new round is requested or refused, not {new.state}")
        key, spec = new.key, new.spec.to_row()
        async with self._pool.connection() as conn, conn.transaction():
            if await (await conn.execute("SELECT 1 FROM rounds WHERE idem_key = %s", (new.idem_key,))).fetchone():
                raise DuplicateRequest(new.idem_key)
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))",
                (f"{key.platform.value}\x1f{key.community}\x1f{key.channel}",),
            )
            cursor = await conn.execute(
                "INSERT INTO rounds (idem_key, platform, community, channel, thread, number, user_id, user_name,"
                " parent_id, kind, prompt, size, quality, background, refs, spec, status, reason, input_shas, owner,"
                " lang, day, created_at, updated_at) "
                "SELECT %s, %s, %s, %s, %s, COALESCE(MAX(number), 0) + 1, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s::jsonb, %s, %s, %s::jsonb, %s, %s, %s, %s, %s "
                "FROM rounds WHERE platform = %s AND community = %s AND channel = %s "
                "ON CONFLICT (idem_key) DO NOTHING RETURNING *",
                (
                    new.idem_key,
                    key.platform.value,
                    key.community,
                    key.channel,
                    key.thread,
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
                    now,
                    now,
                    key.platform.value,
                    key.community,
                    key.channel,
                ),
            )
            row = await cursor.fetchone()
            if row is None:
                raise DuplicateRequest(new.idem_key)
            return round_from_row(row)

    async def get_round(self, round_id: int) -> Round | None:
        row = await self._one("SELECT * FROM rounds WHERE id = %s", (round_id,))
        return round_from_row(row) if row else None

    async def round_by_number(self, key: ChannelKey, number: int) -> Round | None:
        row = await self._one(
            "SELECT * FROM rounds WHERE platform = %s AND community = %s AND channel = %s AND number = %s "
            "ORDER BY id DESC LIMIT 1",
            (key.platform.value, key.community, key.channel, number),
        )
        return round_from_row(row) if row else None

    async def round_by_message(self, key: ChannelKey, message_id: str) -> Round | None:
        row = await self._one(
            "SELECT r.* FROM round_messages m JOIN rounds r ON r.id = m.round_id "
            "WHERE m.platform = %s AND m.channel = %s AND m.message_id = %s",
            (key.platform.value, key.channel, message_id),
        )
        return round_from_row(row) if row else None

    async def derived_rounds(self, round_id: int) -> list[Round]:
        async with self._pool.connection() as conn:
            return await derived_rounds_of(conn, round_id)

    async def reserve(self, reservation: Reservation) -> Balance:
        req = reservation
        async with self._pool.connection() as conn, conn.transaction():
            item = await lock_round(conn, req.round_id)
            if item is None:
                raise StoreError(f"no round {req.round_id}")
            if item.state is not RoundState.REQUESTED:
                if await fetch_one(conn, "SELECT 1 FROM ledger WHERE round_id = %s AND kind = 'reserve'", (item.id,)):
                    raise DuplicateRequest(f"round {item.id} is already reserved")
                raise StoreError(f"round {item.id} is {item.state}, not requested")
            key, day = item.key, day_of(req.now)
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 2))",
                (f"{key.platform.value}\x1f{key.community}\x1f{item.user_id}",),
            )
            bal = await balance_of(conn, key.platform.value, key.community, item.user_id, day, req.default_daily)
            resets_at = next_reset(req.now)
            if bal.banned:
                raise Banned("quota.banned")
            if bal.left < req.cost:
                raise OverQuota("quota.over", cost=req.cost, left=bal.left, resets_at=resets_at)
            if req.budget_usd is not None:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 3))", (day,))
                if await spend_on(conn, day) + req.est_usd > req.budget_usd:
                    raise BudgetExhausted("budget.exhausted", resets_at=resets_at)
            await conn.execute(
                "INSERT INTO ledger (round_id, platform, community, user_id, kind, amount, day, created_at) "
                "VALUES (%s, %s, %s, %s, 'reserve', %s, %s, %s)",
                (item.id, key.platform.value, key.community, item.user_id, req.cost, day, req.now),
            )
            await update_round(
                conn, item.id, req.now, {"status": RoundState.QUEUED.value, "cost": req.cost, "est_usd": req.est_usd}
            )
            return Balance(daily=bal.daily, granted=bal.granted, used=bal.used + req.cost, banned=False)

    async def transition(
        self, round_id: int, state: RoundState, now: datetime, facts: Facts | None = None
    ) -> bool:
        if state not in OPEN_STATES:
            raise ValueError(f"transition() moves between open states; use finish() or deliver() for {state}")
        async with self._pool.connection() as conn, conn.transaction():
            item = await lock_round(conn, round_id)
            if item is None or not item.state.is_open:
                return False
            await write_facts(conn, item, facts, now, {"status": state.value})
            return True

    async def record_facts(self, round_id: int, facts: Facts, now: datetime) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            item = await lock_round(conn, round_id)
            if item is None:
                raise StoreError(f"no round {round_id}")
            await write_facts(conn, item, facts, now, {})

    async def attach_messages(self, round_id: int, key: ChannelKey, message_ids: Sequence[str]) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await attach_messages_to(conn, round_id, key, message_ids, "result")

    async def deliver(
        self, round_id: int, key: ChannelKey, message_ids: Sequence[str], facts: Facts, now: datetime
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            item = await lock_round(conn, round_id)
            if item is None:
                raise StoreError(f"no round {round_id}")
            await attach_messages_to(conn, round_id, key, message_ids, "result")
            if item.state.is_open or item.state is RoundState.DELIVERED:
                await write_facts(conn, item, facts, now, {"status": RoundState.DELIVERED.value})

    async def finish(
        self, round_id: int, state: RoundState, reason: str, now: datetime, facts: Facts | None = None
    ) -> int:
        if state not in FINAL_STATES:
            raise ValueError(f"finish() ends a round as failed, cancelled or refused, not {state}")
        async with self._pool.connection() as conn, conn.transaction():
            item = await lock_round(conn, round_id)
            if item is None or not item.state.is_open:
                return 0
            columns: dict[str, Any] = {"status": state.value, "reason": reason}
            if not item.state.may_be_billed:
                columns["est_usd"] = 0.0
            await write_facts(conn, item, facts, now, columns)
            cursor = await conn.execute(
                "INSERT INTO ledger (round_id, platform, community, user_id, kind, amount, day, created_at) "
                "SELECT round_id, platform, community, user_id, 'refund', amount, day, %s FROM ledger "
                "WHERE round_id = %s AND kind = 'reserve' ON CONFLICT (round_id, kind) DO NOTHING RETURNING amount",
                (now, round_id),
            )
            row = await cursor.fetchone()
            return 0 if row is None else int(row["amount"])

    async def open_rounds(self, owner: str | None = None) -> list[Round]:
        if owner is None:
            rows = await self._all("SELECT * FROM rounds WHERE status = ANY(%s) ORDER BY id", (OPEN,))
        else:
            rows = await self._all(
                "SELECT * FROM rounds WHERE status = ANY(%s) AND owner = %s ORDER BY id", (OPEN, owner)
            )
        return [round_from_row(row) for row in rows]

    async def adopt_rounds(self, owner: str, now: datetime, stale_after: float) -> list[Round]:
        cutoff = now - timedelta(seconds=stale_after)
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT id FROM rounds WHERE status = ANY(%s) AND (owner IS NULL OR (owner <> %s AND NOT EXISTS "
                " (SELECT 1 FROM workers w WHERE w.owner = rounds.owner AND w.heartbeat_at >= %s))) "
                "ORDER BY id FOR UPDATE SKIP LOCKED",
                (OPEN, owner, cutoff),
            )
            ids = [int(row["id"]) for row in await cursor.fetchall()]
            if not ids:
                return []
            cursor = await conn.execute(
                "UPDATE rounds SET owner = %s, updated_at = %s WHERE id = ANY(%s) RETURNING *", (owner, now, ids)
            )
            return sorted((round_from_row(row) for row in await cursor.fetchall()), key=lambda r: r.id)

    async def heartbeat(self, owner: str, now: datetime) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO workers (owner, heartbeat_at) VALUES (%s, %s) "
                "ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (owner, now),
            )

    async def retire(self, owner: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM workers WHERE owner = %s", (owner,))

    # -- privacy ----------------------------------------------------------------------------------------

    async def forget_user(self, platform: Platform, user_id: str) -> Forgotten:
        p = platform.value
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT id, community, prompt, image_sha, input_shas, mime, response_id FROM rounds "
                "WHERE platform = %s AND user_id = %s FOR UPDATE",
                (p, user_id),
            )
            own = await cursor.fetchall()
            others = {
                d.id: d for row in own for d in await derived_rounds_of(conn, int(row["id"])) if d.user_id != user_id
            }
            derived = set(others)
            response_ids = sorted({str(r["response_id"]) for r in own if r["response_id"]}
                                  | {d.response_id for d in others.values() if d.response_id})
            snippets = {(str(row["community"]), prompt_snippet(str(row["prompt"]))) for row in own}
            await conn.execute(
                "UPDATE rounds SET prompt = %s, revised_prompt = NULL, user_name = '', response_id = NULL,"
                " image_call_id = NULL WHERE platform = %s AND user_id = %s",
                (DELETED_PROMPT, p, user_id),
            )
            if derived:
                await conn.execute(
                    "UPDATE rounds SET prompt = %s, revised_prompt = NULL, response_id = NULL, image_call_id = NULL "
                    "WHERE id = ANY(%s)",
                    (DELETED_PROMPT, sorted(derived)),
                )
            await conn.execute("DELETE FROM users WHERE platform = %s AND user_id = %s", (p, user_id))
            await conn.execute("DELETE FROM notices WHERE platform = %s AND user_id = %s", (p, user_id))
            for community, snippet in snippets:
                if snippet and snippet != DELETED_PROMPT:
                    await conn.execute(
                        "DELETE FROM notices WHERE platform = %s AND community = %s AND user_id IS NULL "
                        "AND strpos(text, %s) > 0",
                        (p, community, snippet),
                    )
            candidates = {(str(r["image_sha"]), str(r["mime"] or "image/png")) for r in own if r["image_sha"]}
            candidates |= {(sha, "image/png") for r in own for sha in shas_from_column(r["input_shas"])}
            orphaned = []
            for sha, mime in sorted(candidates):
                shared = await fetch_one(
                    conn,
                    "SELECT 1 FROM rounds WHERE NOT (platform = %s AND user_id = %s) "
                    "AND (image_sha = %s OR input_shas @> %s::jsonb) LIMIT 1",
                    (p, user_id, sha, json.dumps([sha])),
                )
                if not shared:
                    orphaned.append((sha, mime))
            await conn.execute(
                "UPDATE rounds SET image_sha = NULL, input_shas = '[]'::jsonb WHERE platform = %s AND user_id = %s",
                (p, user_id),
            )
            return Forgotten(rounds=len(own), images=orphaned, response_ids=response_ids)


# -- statements shared by several methods, on a connection inside the caller's transaction -----------------


