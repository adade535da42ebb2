"""`SharedCap`: the per-user cap (`core.ports.UserCap`) over every worker on one PostgreSQL.

A user's Discord guilds may sit on shards run by different workers, and a Telegram user's updates may be
claimed by any worker, so counting per process would let a user have the cap once per worker. Each round in
progress is a hold row (`core.ports.FleetStore.user_hold`), checked and written under a per-user lock; a hold
is a lease on its worker's heartbeat, so a dead worker's holds stop counting after `stale_after` seconds, and
a hold whose round has ended no longer counts even if its release was lost."""

from __future__ import annotations

from collections import Counter

from core.leases import Releases
from core.ports import Clock, FleetStore


class SharedCap:
    def __init__(self, store: FleetStore, owner: str, limit: int, clock: Clock, stale_after: float = 30.0) -> None:
        self.store = store
        self.owner = owner
        self.limit = limit
        self.clock = clock
        self.stale_after = stale_after
        self._holds: dict[tuple[str, str], list[int]] = {}
        self._seen: Counter[tuple[str, str]] = Counter()
        self._releases = Releases("user hold")

    async def start(self) -> None:
        await self.store.user_reset(self.owner)

    async def close(self) -> None:
        await self._releases.drain()

    async def enter(self, user: tuple[str, str], round_id: int) -> bool:
        hold, held = await self.store.user_hold(
            user, round_id, self.owner, self.limit, self.clock(), self.stale_after
        )
        self._seen[user] = held
        if len(self._seen) > 10_000:  # forget refused users who hold nothing here
            self._seen = Counter({u: n for u, n in self._seen.items() if u in self._holds or u == user})
        if hold is None:
            return False
        self._holds.setdefault(user, []).append(hold)
        return True

    def leave(self, user: tuple[str, str]) -> None:
        holds = self._holds.get(user)
        if not holds:
            raise RuntimeError("leave() without a hold")
        self._releases.later(holds.pop(), self.store.user_release)
        if not holds:
            del self._holds[user]
            self._seen.pop(user, None)

    def active(self, user: tuple[str, str]) -> int:
        return self._seen[user]
