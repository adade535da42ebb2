"""In-memory guards in front of the provider: the per-user rate, the per-user cap of one process, reroll
de-duplication, and the probe that lets one request at a time find out whether an unavailable provider is
back.

They protect the operator's bill: refused and failed rounds are free, so without a rate limit one credit
would buy unlimited provider calls."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

from core.errors import ProviderUnavailable


class UserGuards:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._recent: dict[tuple[str, str], deque[float]] = {}
        self._rerolls: set[tuple[str, str, int]] = set()
        self._told: dict[tuple[str, str, str], float] = {}

    def rate_ok(self, user: tuple[str, str]) -> bool:
        """Count this request (refused ones too) and say whether it is within the per-minute rate."""
        now = self.clock()
        window = self._recent.setdefault(user, deque())
        while window and now - window[0] > 60.0:
            window.popleft()
        window.append(now)
        if len(self._recent) > 10_000:  # forget idle users
            for idle in [u for u, w in self._recent.items() if not w or now - w[-1] > 60.0]:
                del self._recent[idle]
        return len(window) <= self.per_minute

    def should_tell(self, user: tuple[str, str], reason: str, window: float = 30.0) -> bool:
        """Repeated refusals of one kind to one user within `window` seconds collapse into one message."""
        now = self.clock()
        key = (*user, reason)
        last = self._told.get(key)
        if last is not None and now - last < window:
            return False
        self._told[key] = now
        if len(self._told) > 10_000:
            self._told = {k: t for k, t in self._told.items() if now - t < window}
        return True

    def start_reroll(self, user: tuple[str, str], source: int) -> bool:
        """One reroll of a round per user at a time: a double press starts one round."""
        key = (*user, source)
        if key in self._rerolls:
            return False
        self._rerolls.add(key)
        return True

    def end_reroll(self, user: tuple[str, str], source: int) -> None:
        self._rerolls.discard((*user, source))


class LocalCap:
    """The per-user cap of one process (`core.ports.UserCap`): with SQLite one process serves everyone, so
    counting here is exact. Several workers share `core.shared_caps.SharedCap` instead."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active: Counter[tuple[str, str]] = Counter()

    def active(self, user: tuple[str, str]) -> int:
        return self._active[user]

    async def enter(self, user: tuple[str, str], round_id: int) -> bool:
        if self._active[user] >= self.limit:
            return False
        self._active[user] += 1
        return True

    def leave(self, user: tuple[str, str]) -> None:
        self._active[user] -= 1
        if self._active[user] <= 0:
            del self._active[user]


class ProviderProbe:
    """After "billing exhausted" or "bad key" the provider refuses everyone until the operator acts. Instead
    of refusing everyone for a fixed time, one request at a time goes through as a probe; the others are
    answered at once while it runs. The first success opens the gate again."""

    def __init__(self) -> None:
        self.down: ProviderUnavailable | None = None
        self._probing = False

    def admit(self) -> bool:
        """True if this request may call the provider (and, while down, becomes the probe)."""
        if self.down is None:
            return True
        if self._probing:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        self.down = None
        self._probing = False

    def failed(self, error: ProviderUnavailable) -> None:
        self.down = error
        self._probing = False

    def released(self) -> None:
        """The probe ended without telling (refused before the call, cancelled)."""
        self._probing = False
