"""The quota desk: credits reports and moderator actions, as core operations that take the acting user.

Moderator authority comes from the adapter (`Actor.is_moderator`, decided from the platform) plus
`EASEL_OPERATORS`; a refused action changes nothing. Every change is audited and keyed by the platform's
idempotency key, so a redelivered command is applied once."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from core import quotas, texts
from core.errors import BadRequest, NotModerator, UnknownUser
from core.events import Actor, ChannelKey, Platform, UserRef
from core.outcomes import CreditReport, Notice
from core.settings import Settings
from core.store.sqlite import Store

MAX_DAILY = 100_000


def utcnow() -> datetime:
    return datetime.now(UTC)


class QuotaDesk:
    def __init__(self, settings: Settings, store: Store, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[str | None, str]] = {}

    # -- who is who -------------------------------------------------------------------------------------

    def is_moderator(self, actor: Actor) -> bool:
        return actor.is_moderator or self.settings.is_operator(actor.platform, actor.user_id)

    def _require_moderator(self, actor: Actor) -> None:
        if not self.is_moderator(actor):
            raise NotModerator(texts.NOT_MODERATOR)

    async def seen(self, actor: Actor, community: str) -> None:
        """Remember a user's name so moderators can write `@name`; writes only when something changed."""
        cache_key = (actor.platform.value, actor.user_id)
        value = (actor.username.lower() if actor.username else None, actor.display_name)
        if self._seen.get(cache_key) == value:
            return
        stamp = self.clock().isoformat()
        await self.store.write(
            lambda c: c.execute(
                "INSERT INTO users (platform, user_id, username, display_name, seen_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (platform, user_id) DO UPDATE SET username = excluded.username, "
                "display_name = excluded.display_name, seen_at = excluded.seen_at",
                (actor.platform, actor.user_id, value[0], actor.display_name, stamp),
            )
        )
        self._seen[cache_key] = value

    async def _resolve(self, platform: Platform, target: UserRef) -> tuple[str, str]:
        def find(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None
            if target.user_id is not None:
                row = conn.execute(
                    "SELECT user_id, display_name FROM users WHERE platform = ? AND user_id = ?",
                    (platform, target.user_id),
                ).fetchone()
                return row
            name = (target.username or "").lstrip("@")
            row = conn.execute(
                "SELECT user_id, display_name FROM users WHERE platform = ? AND username = ? COLLATE NOCASE "
                "ORDER BY seen_at DESC LIMIT 1",
                (platform, name),
            ).fetchone()
            return row

        row = await self.store.read(find)
        if row is not None:
            return row["user_id"], target.display_name or row["display_name"] or row["user_id"]
        if target.user_id is not None:
            return target.user_id, target.display_name or target.user_id
        raise UnknownUser(
            f"I haven't seen @{(target.username or '').lstrip('@')} yet. Reply to one of their messages with the "
            "command instead, or use their numeric id."
        )

    # -- reports ----------------------------------------------------------------------------------------

    async def report(self, key: ChannelKey, user_id: str, name: str) -> CreditReport:
        now = self.clock()
        day = quotas.day_of(now)
        daily = self.settings.daily_credits
        bal = await self.store.read(lambda c: quotas.balance(c, key.platform, key.community, user_id, day, daily))
        reset = quotas.next_reset(now)
        who = "You have" if name == "" else f"{name} has"
        lines = [
            f"{who} {texts.credits_phrase(bal.left)} (daily {bal.daily}, used {bal.used}"
            + (f", granted {bal.granted})." if bal.granted else ").")
        ]
        if bal.banned:
            lines.append("Blocked from making images here by a moderator.")
        lines.append(f"Credits reset at {reset:%H:%M} UTC.")
        return CreditReport(
            user_id=user_id,
            display_name=name,
            left_today=bal.left,
            daily=bal.daily,
            granted_today=bal.granted,
            used_today=bal.used,
            resets_at=reset,
            banned=bal.banned,
            text=" ".join(lines),
        )

    async def credits(self, key: ChannelKey, actor: Actor, target: UserRef | None = None) -> Notice:
        if target is None or target.user_id == actor.user_id:
            report = await self.report(key, actor.user_id, "")
            return Notice(report.text, ephemeral=True)
        user_id, name = await self._resolve(key.platform, target)
        if user_id == actor.user_id:
            return await self.credits(key, actor)
        self._require_moderator(actor)
        report = await self.report(key, user_id, name)
        return Notice(report.text, ephemeral=True)

    # -- moderator actions ------------------------------------------------------------------------------

    async def set_daily(
        self, key: ChannelKey, actor: Actor, target: UserRef, daily: int, idempotency_key: str
    ) -> Notice:
        self._require_moderator(actor)
        _check_amount(daily, "daily credits")
        user_id, name = await self._resolve(key.platform, target)
        await self._apply(key, actor, "set_daily", user_id, daily, idempotency_key, daily=daily)
        report = await self.report(key, user_id, name)
        return Notice(f"{name} now gets {daily} credits a day here. {report.text}")

    async def grant(self, key: ChannelKey, actor: Actor, target: UserRef, credits: int, idempotency_key: str) -> Notice:
        self._require_moderator(actor)
        _check_amount(credits, "credits", minimum=1)
        user_id, name = await self._resolve(key.platform, target)
        await self._apply(key, actor, "grant", user_id, credits, idempotency_key)
        report = await self.report(key, user_id, name)
        return Notice(f"Granted {credits} extra credits to {name} for today. {report.text}")

    async def set_default(self, key: ChannelKey, actor: Actor, daily: int, idempotency_key: str) -> Notice:
        self._require_moderator(actor)
        _check_amount(daily, "daily credits")
        await self._apply(key, actor, "set_default", quotas.COMMUNITY_DEFAULT, daily, idempotency_key, daily=daily)
        return Notice(f"Everyone here now gets {daily} credits a day, from today, unless a moderator set their own.")

    async def ban(self, key: ChannelKey, actor: Actor, target: UserRef, idempotency_key: str) -> Notice:
        return await self._set_ban(key, actor, target, idempotency_key, banned=True)

    async def unban(self, key: ChannelKey, actor: Actor, target: UserRef, idempotency_key: str) -> Notice:
        return await self._set_ban(key, actor, target, idempotency_key, banned=False)

    async def _set_ban(
        self, key: ChannelKey, actor: Actor, target: UserRef, idempotency_key: str, *, banned: bool
    ) -> Notice:
        self._require_moderator(actor)
        user_id, name = await self._resolve(key.platform, target)
        action = "ban" if banned else "unban"
        await self._apply(key, actor, action, user_id, None, idempotency_key, banned=banned)
        if banned:
            return Notice(f"{name} can no longer make images here. Use unban to undo.")
        report = await self.report(key, user_id, name)
        return Notice(f"{name} can make images here again. {report.text}")

    async def _apply(
        self,
        key: ChannelKey,
        actor: Actor,
        action: str,
        user_id: str,
        value: int | None,
        idempotency_key: str,
        *,
        daily: int | None = None,
        banned: bool | None = None,
    ) -> None:
        """One transaction: the audit row (a repeat of the key is a redelivery: nothing happens), then the
        policy change, or for `grant` a ledger row."""
        now = self.clock()
        platform, community = key.platform.value, key.community

        def txn(conn: sqlite3.Connection) -> None:
            target = None if user_id == quotas.COMMUNITY_DEFAULT else user_id
            self._audit(conn, key, actor, action, target, value, idempotency_key, now)
            if action == "grant" and value is not None:
                quotas.grant(
                    conn,
                    platform=platform,
                    community=community,
                    user_id=user_id,
                    amount=value,
                    actor_id=actor.user_id,
                    idem_key=idempotency_key,
                    now=now,
                )
            else:
                quotas.set_policy(
                    conn,
                    platform=platform,
                    community=community,
                    user_id=user_id,
                    actor_id=actor.user_id,
                    now=now,
                    daily=daily,
                    banned=banned,
                )

        await self.store.write(txn)

    def _audit(
        self,
        conn: sqlite3.Connection,
        key: ChannelKey,
        actor: Actor,
        action: str,
        target: str | None,
        value: int | None,
        idempotency_key: str,
        now: datetime,
    ) -> None:
        quotas.audit(
            conn,
            platform=key.platform,
            community=key.community,
            actor_id=actor.user_id,
            action=action,
            target=target,
            value=value,
            idem_key=idempotency_key,
            now=now,
        )

    async def usage(self, key: ChannelKey, actor: Actor) -> Notice:
        from core.reports import community_usage, user_usage

        now = self.clock()
        if self.is_moderator(actor):
            text = await self.store.read(lambda c: community_usage(c, key.platform, key.community, now))
            return Notice(text, ephemeral=True)
        text = await self.store.read(lambda c: user_usage(c, key.platform, key.community, actor.user_id, now))
        return Notice(text, ephemeral=True)

    async def migrate_community(self, platform: Platform, old: str, new: str) -> None:
        """A Telegram group became a supergroup: its rounds, credits and policies move to the new id."""

        def txn(conn: sqlite3.Connection) -> None:
            # A policy the new chat already has (set after the upgrade) wins over the old group's.
            conn.execute(
                "DELETE FROM policies WHERE platform = ? AND community = ? AND user_id IN "
                "(SELECT user_id FROM policies WHERE platform = ? AND community = ?)",
                (platform, old, platform, new),
            )
            for table in ("rounds", "ledger", "policies", "audit", "notices"):
                conn.execute(
                    f"UPDATE {table} SET community = ? WHERE platform = ? AND community = ?",  # noqa: S608
                    (new, platform, old),
                )
            for table in ("rounds", "notices", "round_messages"):
                conn.execute(
                    f"UPDATE OR IGNORE {table} SET channel = ? WHERE platform = ? AND channel = ?",  # noqa: S608
                    (new, platform, old),
                )

        await self.store.write(txn)


def _check_amount(value: int, what: str, minimum: int = 0) -> None:
    if not minimum <= value <= MAX_DAILY:
        raise BadRequest(f"The number of {what} must be between {minimum} and {MAX_DAILY}.")
