"""The credit ledger against a plain Python model: a hypothesis state machine over the REAL store and studio.

Each example gets a fresh data dir and its own event loop (`asyncio.Runner`); the machine is synchronous and
runs the async core to completion inside every rule. Rounds go two ways:

- through `Studio.submit` with the fake provider (scripted provider failures, delivery failures, rounds whose
  provider call spans midnight, concurrent pairs of one user, concurrent duplicates): each runs to its end
  inside one step;
- "by hand" with `rounds.claim` + `quotas.reserve` on the store's single writer, the way the studio does it,
  left open across steps (and across midnight) and later committed or refunded.

Every round's event is redelivered at random (finished or still open): nothing happens. Second reserves and
second refunds are attempted: the database refuses them. Moderators (by platform role or EASEL_OPERATORS)
grant, set daily credits and the community default, ban and unban, each command redelivered up to three
times; non-moderators try every verb and change nothing. The injectable clock advances, stops on
23:59:59.999999 and rolls over to the next UTC day.

After every step the ledger must satisfy the accounting invariants of platform-limits.md §4 (see
`ledger_problems`), a user's net charge in a day never exceeds the highest allowance they had that day plus
that day's grants, and every balance and round status equals the model's.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bots.process.app import Core, open_core
from bots.process.config import Settings, load_settings
from core import quotas, rounds, texts
from core.errors import Banned, DuplicateRequest, NotModerator, OverQuota, ProviderBusy, SafetyRefusal
from core.events import Actor, ChannelKey, Platform, Quality, RoundRequest, Size, UserRef
from core.outcomes import Notice
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.recording_view import RecordingView

T = TypeVar("T")

# --------------------------------------------------------------------------------------------------------
# Generic ledger checks, shared with the concurrency and crash tests.

OPEN = ("reserved", "running", "generated")


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for "this changed nothing" comparisons."""
    tables = [
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    ]
    return {
        table: sorted(tuple(row) for row in conn.execute(f'SELECT * FROM "{table}"'))  # noqa: S608 - our tables
        for table in sorted(tables)
    }


def ledger_problems(conn: sqlite3.Connection, *, allow_pending: bool = True) -> list[str]:
    """The accounting invariants that hold for any database Easel wrote, whatever happened; [] when sound.

    Per round: at most one reserve and one refund, a refund only after a reserve, both of exactly the round's
    cost, on the same user, community and day; net charge 0 or the cost; charged exactly when delivered
    (or still in flight). Grants are the only rows without a round and always carry a moderator and a key.
    `allow_pending=False` also demands that no round is stuck in `pending` (nothing in flight)."""
    problems: list[str] = []
    entries: dict[int, dict[str, list[sqlite3.Row]]] = {}
    for row in conn.execute("SELECT * FROM ledger ORDER BY id"):
        if row["round_id"] is None:
            if row["kind"] != "grant" or not row["actor_id"] or not row["idem_key"]:
                problems.append(f"ledger row {row['id']} has no round and is not a keyed grant: {dict(row)}")
            continue
        entries.setdefault(row["round_id"], {}).setdefault(row["kind"], []).append(row)
    for item in conn.execute("SELECT * FROM rounds ORDER BY id"):
        rid, cost, status = item["id"], item["cost"], item["status"]
        kinds = entries.pop(rid, {})
        reserves, refunds = kinds.pop("reserve", []), kinds.pop("refund", [])
        if kinds:
            problems.append(f"round {rid}: unexpected ledger kinds {sorted(kinds)}")
        if len(reserves) > 1 or len(refunds) > 1:
            problems.append(f"round {rid}: {len(reserves)} reserves and {len(refunds)} refunds")
        if refunds and not reserves:
            problems.append(f"round {rid}: refund without a reserve")
        for entry in reserves + refunds:
            if entry["amount"] != cost:
                problems.append(f"round {rid}: {entry['kind']} of {entry['amount']} but the round costs {cost}")
            owner = (entry["platform"], entry["community"], entry["user_id"])
            if owner != (item["platform"], item["community"], item["user_id"]):
                problems.append(f"round {rid}: {entry['kind']} booked to {owner}")
        if reserves and refunds and refunds[0]["day"] != reserves[0]["day"]:
            problems.append(f"round {rid}: refund counted on {refunds[0]['day']}, reserve on {reserves[0]['day']}")
        net = sum(e["amount"] for e in reserves) - sum(e["amount"] for e in refunds)
        if net not in (0, cost):
            problems.append(f"round {rid}: net charge {net}, cost {cost}")
        charged = bool(reserves) and not refunds
        if status == "delivered" and not charged:
            problems.append(f"round {rid}: delivered but not charged")
        if status in OPEN and not charged:
            problems.append(f"round {rid}: {status} without a standing reserve")
        if status in ("failed", "refused", "pending") and charged:
            problems.append(f"round {rid}: {status} but charged {net}")
        if status == "pending" and (reserves or not allow_pending):
            problems.append(f"round {rid}: still pending")
    for rid in entries:
        problems.append(f"ledger rows for round {rid}, which does not exist")
    return problems


def net_by_user_day(conn: sqlite3.Connection) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(community, user, day) -> (net charge, grants) straight from the ledger."""
    rows = conn.execute(
        "SELECT community, user_id, day,"
        " COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount WHEN 'refund' THEN -amount END), 0) AS net,"
        " COALESCE(SUM(CASE kind WHEN 'grant' THEN amount END), 0) AS granted "
        "FROM ledger GROUP BY community, user_id, day"
    )
    return {(r["community"], r["user_id"], r["day"]): (r["net"], r["granted"]) for r in rows}


# --------------------------------------------------------------------------------------------------------
# The model.

USERS = ("1", "2", "3")
COMMUNITIES = ("c1", "c2")
DEFAULT_DAILY = 4
OPERATOR = Actor(Platform.CONSOLE, "99", "Operator")  # a moderator only through EASEL_OPERATORS
MODERATOR = Actor(Platform.CONSOLE, "98", "Mod", is_moderator=True)  # a moderator by platform role
START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SHAPES = [(size, quality) for size in Size for quality in Quality]
PROVIDER_FAILURES: dict[str, tuple[Callable[[], BaseException], str]] = {
    "safety": (lambda: SafetyRefusal("declined by the safety system"), "safety"),
    "busy": (lambda: ProviderBusy("busy, try again in 5 s", retry_after=5), "provider_busy"),
    "crash": (lambda: RuntimeError("provider exploded"), "error"),
}
OUTCOMES = ["ok", "ok", "delivery", *PROVIDER_FAILURES]


def channel(community: str) -> ChannelKey:
    return ChannelKey(Platform.CONSOLE, community, f"ch-{community}")


def member(user: str) -> Actor:
    return Actor(Platform.CONSOLE, user, f"User {user}")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    @property
    def day(self) -> str:
        return quotas.day_of(self.now)


@dataclass
class ModelRound:
    community: str
    user: str
    cost: int
    status: str
    day: str | None = None  # the day its reserve counts on; None if never reserved
    charged: bool = False


@dataclass
class Model:
    default_daily: int
    user_daily: dict[tuple[str, str], int] = field(default_factory=dict)
    community_daily: dict[str, int] = field(default_factory=dict)
    banned: set[tuple[str, str]] = field(default_factory=set)
    granted: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    peak_allowance: dict[tuple[str, str, str], int] = field(default_factory=dict)
    rounds: dict[int, ModelRound] = field(default_factory=dict)

    def allowance(self, community: str, user: str) -> int:
        if (community, user) in self.user_daily:
            return self.user_daily[(community, user)]
        return self.community_daily.get(community, self.default_daily)

    def used(self, community: str, user: str, day: str) -> int:
        mine = (community, user)
        return sum(r.cost for r in self.rounds.values() if r.charged and r.day == day and (r.community, r.user) == mine)

    def left(self, community: str, user: str, day: str) -> int:
        total = self.allowance(community, user) + self.granted[(community, user, day)]
        return max(0, total - self.used(community, user, day))

    def expect(self, community: str, user: str, cost: int, day: str) -> str:
        if (community, user) in self.banned:
            return "banned"
        return "ok" if self.left(community, user, day) >= cost else "over_quota"


# --------------------------------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="easel-ledger-")
        self._runner = asyncio.Runner()
        self.clock = Clock(START)
        self.provider = FakeProvider()
        self.settings: Settings = load_settings(
            {
                "OPENAI_API_KEY": "sk-test-not-a-real-key",
                "EASEL_DATA_DIR": str(Path(self._tmp.name) / "data"),
                "EASEL_DAILY_CREDITS": str(DEFAULT_DAILY),
                "EASEL_OPERATORS": f"console:{OPERATOR.user_id}",
            },
            dotenv=None,
        )
        self._core_cm = open_core(self.settings, provider=self.provider, clock=self.clock)
        self.core: Core = self.run(self._core_cm.__aenter__())
        self.model = Model(DEFAULT_DAILY)
        self.requests: list[RoundRequest] = []  # every round's request, for redelivery
        self.open: list[int] = []  # rounds reserved by hand and not finished yet
        self._keys = 0

    def teardown(self) -> None:
        try:
            self.run(self._core_cm.__aexit__(None, None, None))
        finally:
            self._runner.close()
            self._tmp.cleanup()

    # -- plumbing ---------------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.run(self.core.store.write(fn))

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.run(self.core.store.read(fn))

    def new_key(self, kind: str) -> str:
        self._keys += 1
        return f"{kind}:{self._keys}"

    def round_id(self, idem_key: str) -> int:
        row = self.read(lambda c: c.execute("SELECT id FROM rounds WHERE idem_key = ?", (idem_key,)).fetchone())
        assert row is not None, f"no round recorded for {idem_key}"
        return int(row[0])

    def record(self, request: RoundRequest, cost: int, outcome: str, day: str) -> None:
        """Book a round the studio ran to its end: outcome 'ok', 'refunded', or a refusal before reserving.
        `day` is the UTC day it reserved on."""
        rid = self.round_id(request.idempotency_key)
        key = request.key
        if outcome == "ok":
            self.model.rounds[rid] = ModelRound(key.community, request.actor.user_id, cost, "delivered", day, True)
        elif outcome == "refunded":
            self.model.rounds[rid] = ModelRound(key.community, request.actor.user_id, cost, "failed", day)
        else:
            self.model.rounds[rid] = ModelRound(key.community, request.actor.user_id, 0, "refused")
        self.requests.append(request)

    def request(self, user: str, community: str, shape: tuple[Size, Quality]) -> RoundRequest:
        return RoundRequest(
            key=channel(community),
            actor=member(user),
            prompt=f"a fox, take {self._keys}",
            idempotency_key=self.new_key("r"),
            size=shape[0],
            quality=shape[1],
        )

    def moderator_call(self, actor: Actor, verb: str, community: str, user: str, value: int, idem: str) -> Notice:
        studio, key, target = self.core.studio, channel(community), UserRef(user_id=user)
        calls: dict[str, Callable[[], Coroutine[Any, Any, Notice]]] = {
            "grant": lambda: studio.grant(key, actor, target, value, idem),
            "set_daily": lambda: studio.set_daily(key, actor, target, value, idem),
            "set_default": lambda: studio.set_default(key, actor, value, idem),
            "ban": lambda: studio.ban(key, actor, target, idem),
            "unban": lambda: studio.unban(key, actor, target, idem),
            "credits": lambda: studio.credits(key, actor, target),
        }
        return self.run(calls[verb]())

    # -- rounds through the studio ------------------------------------------------------------------------

    @rule(
        user=st.sampled_from(USERS),
        community=st.sampled_from(COMMUNITIES),
        shape=st.sampled_from(SHAPES),
        outcome=st.sampled_from(OUTCOMES),
        spans_midnight=st.booleans(),
    )
    def studio_round(
        self, user: str, community: str, shape: tuple[Size, Quality], outcome: str, spans_midnight: bool
    ) -> None:
        """One round through the studio. With `spans_midnight` it reserves on the last microsecond of a UTC day
        and the provider answers (or fails) on the next: the charge or refund still belongs to the first day."""
        if spans_midnight:
            self.clock.now = quotas.next_reset(self.clock.now) - timedelta(microseconds=1)
            self.provider.on_call = lambda job: self.clock_moves("next_day", 1)
        request = self.request(user, community, shape)
        cost = self.settings.cost(*shape)
        day = self.clock.day
        expected = self.model.expect(community, user, cost, day)
        left_after = self.model.left(community, user, day) - cost
        if expected == "ok" and outcome in PROVIDER_FAILURES:
            self.provider.fail_next(PROVIDER_FAILURES[outcome][0]())
        view = RecordingView(fail_delivery=ConnectionError("chat gone") if outcome == "delivery" else None)
        calls = len(self.provider.jobs)
        try:
            self.run(self.core.studio.submit(request, view))
        finally:
            self.provider.failures.clear()
            self.provider.on_call = None
        if expected != "ok":
            assert view.refusal is not None and view.refusal.reason == expected, view
            assert len(self.provider.jobs) == calls, "a refused round reached the provider"
            self.record(request, cost, expected, day)
            return
        assert len(self.provider.jobs) == calls + 1
        if outcome == "ok":
            assert view.result is not None, view.refusal
            assert view.result.credits_left == left_after
            self.record(request, cost, "ok", day)
        else:
            reason = PROVIDER_FAILURES[outcome][1] if outcome in PROVIDER_FAILURES else "error"
            assert view.refusal is not None and view.refusal.reason == reason, view
            self.record(request, cost, "refunded", day)

    @rule(
        user=st.sampled_from(USERS),
        community=st.sampled_from(COMMUNITIES),
        first=st.sampled_from(SHAPES),
        second=st.sampled_from(SHAPES),
    )
    def concurrent_pair(
        self, user: str, community: str, first: tuple[Size, Quality], second: tuple[Size, Quality]
    ) -> None:
        """Two rounds of one user at once: whichever reserves first, the pair must fit the model in that order."""
        requests = [self.request(user, community, first), self.request(user, community, second)]
        costs = [self.settings.cost(*first), self.settings.cost(*second)]
        views = [RecordingView(), RecordingView()]

        async def both() -> None:
            await asyncio.gather(*(self.core.studio.submit(r, v) for r, v in zip(requests, views, strict=True)))

        day, banned = self.clock.day, (community, user) in self.model.banned
        self.run(both())
        got = tuple(v.result is not None for v in views)
        possible = set()
        for order in ((0, 1), (1, 0)):
            left, ok = self.model.left(community, user, day), [False, False]
            for i in order:
                if not banned and left >= costs[i]:
                    ok[i], left = True, left - costs[i]
            possible.add(tuple(ok))
        assert got in possible, f"{got} not in {possible}: {[v.refusal for v in views]}"
        for request, cost, view, delivered in zip(requests, costs, views, got, strict=True):
            if not delivered:
                assert view.refusal is not None
                assert view.refusal.reason == ("banned" if banned else "over_quota")
            self.record(request, cost, "ok" if delivered else "refused", day)

    @rule(
        user=st.sampled_from(USERS),
        community=st.sampled_from(COMMUNITIES),
        copies=st.integers(2, 3),
    )
    def concurrent_duplicates(self, user: str, community: str, copies: int) -> None:
        """The same event delivered several times at once runs one round."""
        request = self.request(user, community, (Size.SQUARE, Quality.MEDIUM))
        cost = self.settings.cost(Size.SQUARE, Quality.MEDIUM)
        day = self.clock.day
        expected = self.model.expect(community, user, cost, day)
        views = [RecordingView() for _ in range(copies)]
        calls = len(self.provider.jobs)

        async def all_copies() -> None:
            await asyncio.gather(*(self.core.studio.submit(request, v) for v in views))

        self.run(all_copies())
        answered = [v for v in views if v.events]
        assert len(answered) == 1, [v.events for v in views]
        assert len(self.provider.jobs) == calls + (expected == "ok")
        self.record(request, cost, expected, day)

    @precondition(lambda self: self.requests)
    @rule(pick=st.integers(0, 10_000))
    def redeliver(self, pick: int) -> None:
        """A redelivered event (studio or by-hand round, finished or not) does nothing and says nothing."""
        request = self.requests[pick % len(self.requests)]
        self.run(self.core.studio.seen(request.actor, request.key.community))  # by-hand rounds skipped it
        before = self.read(dump)
        calls = len(self.provider.jobs)
        view = RecordingView()
        self.run(self.core.studio.submit(request, view))
        assert view.events == []
        assert len(self.provider.jobs) == calls
        assert self.read(dump) == before

    # -- rounds by hand: reserve now, finish in a later step --------------------------------------------------

    @rule(user=st.sampled_from(USERS), community=st.sampled_from(COMMUNITIES), shape=st.sampled_from(SHAPES))
    def reserve_by_hand(self, user: str, community: str, shape: tuple[Size, Quality]) -> None:
        self._reserve_by_hand(user, community, shape)

    @precondition(lambda self: self.open)
    @rule(pick=st.integers(0, 10_000), deliver=st.booleans())
    def finish_by_hand(self, pick: int, deliver: bool) -> None:
        """Commit (delivered) or refund an open reservation, possibly on a later day than it was made."""
        self._finish_by_hand(self.open[pick % len(self.open)], deliver)

    @rule(
        user=st.sampled_from(USERS),
        community=st.sampled_from(COMMUNITIES),
        shape=st.sampled_from(SHAPES),
        deliver=st.booleans(),
        minutes=st.integers(0, 1500),
    )
    def across_midnight(
        self, user: str, community: str, shape: tuple[Size, Quality], deliver: bool, minutes: int
    ) -> None:
        """Reserve on the last microsecond of a UTC day, finish it after midnight (up to a day later)."""
        self.clock_moves("last_moment", 0)
        rid = self._reserve_by_hand(user, community, shape)
        self.clock_moves("next_day", minutes)
        if rid is not None:
            self._finish_by_hand(rid, deliver)

    def _reserve_by_hand(self, user: str, community: str, shape: tuple[Size, Quality]) -> int | None:
        """Claim and reserve the way the studio does, in two transactions; returns the round id if reserved."""
        request = self.request(user, community, shape)
        cost = self.settings.cost(*shape)
        expected = self.model.expect(community, user, cost, self.clock.day)
        now = self.clock()

        def claim(conn: sqlite3.Connection) -> rounds.Round:
            return rounds.claim(
                conn,
                idem_key=request.idempotency_key,
                key=request.key,
                user_id=user,
                user_name="",
                parent_id=None,
                kind="generate",
                prompt=request.prompt,
                size=shape[0].value,
                quality=shape[1].value,
                input_sha=None,
                now=now,
            )

        item = self.write(claim)

        def reserve(conn: sqlite3.Connection) -> str:
            try:
                quotas.reserve(
                    conn,
                    round_id=item.id,
                    platform=item.key.platform,
                    community=community,
                    user_id=user,
                    cost=cost,
                    now=now,
                    default_daily=self.settings.daily_credits,
                )
            except (OverQuota, Banned) as refusal:
                rounds.update(conn, item.id, now, status="refused", reason=refusal.reason)
                return refusal.reason
            rounds.update(conn, item.id, now, status="reserved", cost=cost)
            return "ok"

        assert self.write(reserve) == expected
        self.requests.append(request)
        if expected != "ok":
            self.model.rounds[item.id] = ModelRound(community, user, 0, "refused")
            return None
        self.model.rounds[item.id] = ModelRound(community, user, cost, "reserved", self.clock.day, charged=True)
        self.open.append(item.id)
        return item.id

    def _finish_by_hand(self, rid: int, deliver: bool) -> None:
        self.open.remove(rid)
        now = self.clock()
        expected = self.model.rounds[rid]
        if deliver:
            self.write(lambda c: rounds.update(c, rid, now, status="delivered"))
            expected.status = "delivered"
            return

        def txn(conn: sqlite3.Connection) -> int:
            amount = quotas.refund(conn, rid, now)
            rounds.update(conn, rid, now, status="failed", reason="error")
            return amount

        assert self.write(txn) == expected.cost
        expected.status, expected.charged = "failed", False

    @precondition(lambda self: self.model.rounds)
    @rule(pick=st.integers(0, 10_000))
    def write_twice(self, pick: int) -> None:
        """A second reserve for a round that has one cannot be written (the database refuses it, or the quota
        does first), and a second refund of a refunded or never-reserved round writes nothing. (A delivered
        round is never refunded by the studio, so that is not tried.)"""
        ids = sorted(self.model.rounds)
        rid = ids[pick % len(ids)]
        item = self.model.rounds[rid]
        before = self.read(dump)
        if item.day is not None:
            with pytest.raises((sqlite3.IntegrityError, OverQuota, Banned)):
                self.write(
                    lambda c: quotas.reserve(
                        c,
                        round_id=rid,
                        platform=Platform.CONSOLE,
                        community=item.community,
                        user_id=item.user,
                        cost=item.cost,
                        now=self.clock(),
                        default_daily=self.settings.daily_credits,
                    )
                )
        if item.status in ("failed", "refused"):
            assert self.write(lambda c: quotas.refund(c, rid, self.clock())) == 0
        assert self.read(dump) == before

    # -- moderators ----------------------------------------------------------------------------------------

    def moderate(self, verb: str, community: str, user: str, value: int, by_operator: bool, copies: int) -> Notice:
        """Run a moderator command, then redeliver it: the copies raise DuplicateRequest and change nothing."""
        actor = OPERATOR if by_operator else MODERATOR
        idem = self.new_key("mod")
        result = self.moderator_call(actor, verb, community, user, value, idem)
        snapshot = self.read(dump)
        for _ in range(copies - 1):
            with pytest.raises(DuplicateRequest):
                self.moderator_call(actor, verb, community, user, value, idem)
        assert self.read(dump) == snapshot
        return result

    @rule(
        user=st.sampled_from(USERS),
        community=st.sampled_from(COMMUNITIES),
        amount=st.integers(1, 6),
        by_operator=st.booleans(),
        copies=st.integers(1, 3),
    )
    def grant(self, user: str, community: str, amount: int, by_operator: bool, copies: int) -> None:
        self.model.granted[(community, user, self.clock.day)] += amount
        notice = self.moderate("grant", community, user, amount, by_operator, copies)
        assert texts.credits_phrase(self.model.left(community, user, self.clock.day)) in notice.text

    @rule(
        whom=st.sampled_from([*USERS, quotas.COMMUNITY_DEFAULT]),
        community=st.sampled_from(COMMUNITIES),
        daily=st.integers(0, 8),
        by_operator=st.booleans(),
        copies=st.integers(1, 3),
    )
    def set_allowance(self, whom: str, community: str, daily: int, by_operator: bool, copies: int) -> None:
        """A user's own daily credits, or (whom "*") the community default."""
        if whom == quotas.COMMUNITY_DEFAULT:
            self.model.community_daily[community] = daily
            self.moderate("set_default", community, "", daily, by_operator, copies)
            return
        self.model.user_daily[(community, whom)] = daily
        notice = self.moderate("set_daily", community, whom, daily, by_operator, copies)
        assert texts.credits_phrase(self.model.left(community, whom, self.clock.day)) in notice.text

    @rule(
        user=st.sampled_from(USERS),
        community=st.sampled_from(COMMUNITIES),
        banned=st.booleans(),
        by_operator=st.booleans(),
        copies=st.integers(1, 3),
    )
    def ban_or_unban(self, user: str, community: str, banned: bool, by_operator: bool, copies: int) -> None:
        (self.model.banned.add if banned else self.model.banned.discard)((community, user))
        self.moderate("ban" if banned else "unban", community, user, 0, by_operator, copies)

    @rule(
        verb=st.sampled_from(["grant", "set_daily", "set_default", "ban", "unban", "credits"]),
        actor=st.sampled_from(USERS),
        user=st.sampled_from(USERS),
        community=st.sampled_from(COMMUNITIES),
    )
    def not_a_moderator(self, verb: str, actor: str, user: str, community: str) -> None:
        if verb == "credits" and user == actor:
            return  # asking about yourself is allowed
        before = self.read(dump)
        with pytest.raises(NotModerator):
            self.moderator_call(member(actor), verb, community, user, 3, self.new_key("mod"))
        assert self.read(dump) == before

    # -- time ------------------------------------------------------------------------------------------------

    @rule(how=st.sampled_from(["minutes", "last_moment", "next_day"]), minutes=st.integers(1, 600))
    def time_passes(self, how: str, minutes: int) -> None:
        self.clock_moves(how, minutes)

    def clock_moves(self, how: str, minutes: int) -> None:
        """Time passes by some minutes, or stops on the last microsecond of the UTC day, or jumps past midnight."""
        midnight = quotas.next_reset(self.clock.now)
        if how == "minutes":
            self.clock.now += timedelta(minutes=minutes)
        elif how == "last_moment":
            self.clock.now = midnight - timedelta(microseconds=1)
        else:
            self.clock.now = midnight + timedelta(minutes=minutes)

    # -- invariants ------------------------------------------------------------------------------------------

    @invariant()
    def ledger_is_sound(self) -> None:
        assert self.read(ledger_problems) == []

    @invariant()
    def nobody_spends_beyond_allowance_and_grants(self) -> None:
        day = self.clock.day
        for community in COMMUNITIES:
            for user in USERS:
                slot = (community, user, day)
                allowance = self.model.allowance(community, user)
                self.model.peak_allowance[slot] = max(self.model.peak_allowance.get(slot, allowance), allowance)
        for (community, user, d), (net, granted) in self.read(net_by_user_day).items():
            assert granted == self.model.granted[(community, user, d)]
            assert net == self.model.used(community, user, d)
            assert net <= self.model.peak_allowance[(community, user, d)] + granted, (community, user, d)

    @invariant()
    def balances_match_the_model(self) -> None:
        day = self.clock.day

        def balances(conn: sqlite3.Connection) -> dict[tuple[str, str], quotas.Balance]:
            return {
                (c, u): quotas.balance(conn, Platform.CONSOLE, c, u, day, self.settings.daily_credits)
                for c in COMMUNITIES
                for u in USERS
            }

        for (community, user), bal in self.read(balances).items():
            assert bal.daily == self.model.allowance(community, user)
            assert bal.banned == ((community, user) in self.model.banned)
            assert bal.left == self.model.left(community, user, day), (community, user, bal)
            assert bal.left == max(0, bal.daily + bal.granted - bal.used)

    @invariant()
    def rounds_match_the_model(self) -> None:
        actual = dict(
            self.read(lambda c: [(r["id"], (r["status"], r["cost"])) for r in c.execute("SELECT * FROM rounds")])
        )
        assert set(actual) == set(self.model.rounds)
        for rid, expected in self.model.rounds.items():
            status, cost = actual[rid]
            assert status == expected.status, (rid, status, expected)
            if expected.status != "refused":
                assert cost == expected.cost
        charged = sum(1 for r in self.model.rounds.values() if r.charged)
        delivered_or_open = sum(1 for s, _ in actual.values() if s == "delivered" or s in OPEN)
        assert charged == delivered_or_open


LedgerMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the tree; a failure prints its minimal steps
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerModel = LedgerMachine.TestCase
# A passing run takes ~5 s; a failing one spends up to a few minutes shrinking to a minimal list of steps,
# which pytest's default 60 s timeout would cut short (and hide behind a Timeout).
TestLedgerModel.pytestmark = [pytest.mark.timeout(600)]  # type: ignore[attr-defined]
