"""`SqliteStore`: the store port (`core.ports.Store`) on an embedded SQLite database, the default backend.

Each method is one transaction on the engine (`core.store.sqlite_engine`): writes on the single writer
thread inside `BEGIN IMMEDIATE` (a refusal raised inside rolls the method's savepoint back: nothing is
written), reads on the reader thread in one snapshot. The SQL itself lives in `core.store.sqlite_sql` (rounds),
`core.store.sqlite_ledger` (credits, moderation) and `core.store.sqlite_records` (reports, notices, inbox,
privacy)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType

from core.errors import StoreError
from core.events import ChannelKey, Platform, UserRef
from core.records import (
    Balance,
    CommunityUsage,
    Facts,
    Forgotten,
    InboxItem,
    ModChange,
    NewRound,
    PendingNotice,
    Reservation,
    Round,
    RoundState,
    TopUser,
    UsageTotals,
)
from core.store import sqlite_ledger as ledger
from core.store import sqlite_records as records
from core.store import sqlite_sql as sql
from core.store.backup import backup_connection
from core.store.sqlite_engine import Engine


class SqliteStore:
    """Open with `async with SqliteStore(path) as store:`; migrations run and the file is checked on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Engine(path)

    async def __aenter__(self) -> SqliteStore:
        await self._db.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._db.close()

    # -- lifecycle and health ---------------------------------------------------------------------------

    async def writable(self) -> bool:
        """Readiness: can the writer still commit?"""
        try:
            await self._db.write(sql.touch)
        except (sqlite3.Error, StoreError):
            return False
        return True

    async def checkpoint(self) -> None:
        """Fold the WAL into the database file and truncate it (after erasing data)."""
        await self._db.on_writer(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())

    async def backup(self, target: Path) -> None:
        await self._db.on_writer(lambda c: backup_connection(c, self.path, target))

    async def safety_salt(self) -> str:
        return await self._db.read(sql.safety_salt)

    # -- users ------------------------------------------------------------------------------------------

    async def remember_user(
        self, platform: Platform, user_id: str, username: str | None, display_name: str, now: datetime
    ) -> None:
        await self._db.write(lambda c: sql.remember_user(c, platform, user_id, username, display_name, now))

    async def find_user(self, platform: Platform, ref: UserRef) -> tuple[str, str] | None:
        return await self._db.read(lambda c: sql.find_user(c, platform, ref))

    # -- rounds -----------------------------------------------------------------------------------------

    async def create_round(self, new: NewRound, now: datetime) -> Round:
        return await self._db.write(lambda c: sql.create_round(c, new, now))

    async def get_round(self, round_id: int) -> Round | None:
        return await self._db.read(lambda c: sql.get_round(c, round_id))

    async def round_by_number(self, key: ChannelKey, number: int) -> Round | None:
        return await self._db.read(lambda c: sql.round_by_number(c, key, number))

    async def round_by_message(self, key: ChannelKey, message_id: str) -> Round | None:
        return await self._db.read(lambda c: sql.round_by_message(c, key, message_id))

    async def derived_rounds(self, round_id: int) -> list[Round]:
        return await self._db.read(lambda c: sql.derived_rounds(c, round_id))

    async def reserve(self, reservation: Reservation) -> Balance:
        return await self._db.write(lambda c: ledger.reserve(c, reservation))

    async def transition(
        self, round_id: int, state: RoundState, now: datetime, facts: Facts | None = None
    ) -> bool:
        return await self._db.write(lambda c: sql.transition(c, round_id, state, now, facts))

    async def record_facts(self, round_id: int, facts: Facts, now: datetime) -> None:
        await self._db.write(lambda c: sql.record_facts(c, round_id, facts, now))

    async def attach_messages(self, round_id: int, key: ChannelKey, message_ids: Sequence[str]) -> None:
        await self._db.write(lambda c: sql.attach_messages(c, round_id, key, message_ids, "result"))

    async def deliver(
        self, round_id: int, key: ChannelKey, message_ids: Sequence[str], facts: Facts, now: datetime
    ) -> None:
        await self._db.write(lambda c: sql.deliver(c, round_id, key, message_ids, facts, now))

    async def finish(
        self, round_id: int, state: RoundState, reason: str, now: datetime, facts: Facts | None = None
    ) -> int:
        return await self._db.write(lambda c: sql.finish(c, round_id, state, reason, now, facts))

    async def open_rounds(self, owner: str | None = None) -> list[Round]:
        return await self._db.read(lambda c: sql.open_rounds(c, owner))

    async def adopt_rounds(self, owner: str, now: datetime, stale_after: float) -> list[Round]:
        return await self._db.write(lambda c: sql.adopt_rounds(c, owner, now, stale_after))

    async def heartbeat(self, owner: str, now: datetime) -> None:
        await self._db.write(lambda c: sql.heartbeat(c, owner, now))

    async def retire(self, owner: str) -> None:
        await self._db.write(lambda c: sql.retire(c, owner))

    # -- credits and moderation ---------------------------------------------------------------------------

    async def balance(
        self, platform: Platform, community: str, user_id: str, day: str, default_daily: int
    ) -> Balance:
        return await self._db.read(lambda c: ledger.balance(c, platform, community, user_id, day, default_daily))

    async def moderate(self, change: ModChange) -> None:
        await self._db.write(lambda c: ledger.moderate(c, change))

    async def granted_by(self, platform: Platform, community: str, actor_id: str, day: str) -> int:
        return await self._db.read(lambda c: ledger.granted_by(c, platform, community, actor_id, day))

    async def spend_on(self, day: str) -> float:
        return await self._db.read(lambda c: ledger.spend_on(c, day))

    async def community_language(self, platform: Platform, community: str) -> str | None:
        return await self._db.read(lambda c: ledger.community_language(c, platform, community))

    async def migrate_community(self, platform: Platform, old: str, new: str) -> None:
        await self._db.write(lambda c: ledger.migrate_community(c, platform, old, new))

    # -- reports ----------------------------------------------------------------------------------------

    async def usage_totals(
        self, platform: Platform, community: str, since: str, user_id: str | None = None
    ) -> UsageTotals:
        return await self._db.read(lambda c: records.usage_totals(c, platform, community, since, user_id))

    async def top_users(self, platform: Platform, community: str, since: str, limit: int) -> list[TopUser]:
        return await self._db.read(lambda c: records.top_users(c, platform, community, since, limit))

    async def community_usage(self, now: datetime, community: str | None = None) -> list[CommunityUsage]:
        return await self._db.read(lambda c: records.community_usage(c, now, community))

    # -- notices ----------------------------------------------------------------------------------------

    async def add_notice(
        self, key: ChannelKey, reply_to: str | None, text: str, now: datetime, user_id: str | None = None
    ) -> None:
        await self._db.write(lambda c: records.add_notice(c, key, reply_to, text, now, user_id))

    async def pending_notices(self, platform: Platform) -> list[PendingNotice]:
        return await self._db.read(lambda c: records.pending_notices(c, platform))

    async def notice_sent(self, notice_id: int, now: datetime) -> None:
        await self._db.write(lambda c: records.notice_sent(c, notice_id, now))

    # -- inbox ------------------------------------------------------------------------------------------

    async def inbox_put(self, platform: Platform, items: Sequence[tuple[str, str]], now: datetime) -> None:
        if items:
            await self._db.write(lambda c: records.inbox_put(c, platform, items, now))

    async def inbox_done(self, platform: Platform, idem_key: str) -> None:
        await self._db.write(lambda c: records.inbox_done(c, platform, idem_key))

    async def inbox_pending(self, platform: Platform, now: datetime) -> list[InboxItem]:
        return await self._db.write(lambda c: records.inbox_pending(c, platform, now))

    # -- privacy ----------------------------------------------------------------------------------------

    async def forget_user(self, platform: Platform, user_id: str) -> Forgotten:
        return await self._db.write(lambda c: records.forget_user(c, platform, user_id))
