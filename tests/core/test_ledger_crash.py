"""Crash recovery of the ledger: a real Easel process (tests/core/_crash_worker.py) with rounds in flight is
killed with SIGKILL; opening the core again on the same data dir (Studio.start) must leave a sound database,
refund every unfinished round exactly once, charge nothing twice, lose no ledger row, and queue one notice per
interrupted round."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bots.process.app import open_core
from bots.process.config import Settings
from core.events import Actor, ChannelKey, Platform, RoundRequest
from tests.core._crash_worker import settings_for
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.recording_view import RecordingView

ROOT = Path(__file__).resolve().parents[2]
OPEN = ("requested", "queued", "running", "delivering")


@dataclass
class Snapshot:
    integrity: str
    statuses: Counter[str]
    open_ids: set[int]  # rounds left unfinished
    reserved_open_ids: set[int]  # ... of which holding a reserve
    reserves: int
    refunds: int
    refunded_ids: set[int]
    delivered_cost: dict[str, int]  # user -> credits of delivered rounds
    net: dict[str, int]  # user -> net charge in the ledger


def snapshot(db: Path) -> Snapshot:
    """Read the database file directly with plain sqlite3, as a post-mortem would."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = conn.execute("SELECT id, status, user_id, cost FROM rounds").fetchall()
        ledger = conn.execute(
            "SELECT round_id, kind, amount, user_id FROM ledger WHERE round_id IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    reserved = {r["round_id"] for r in ledger if r["kind"] == "reserve"}
    refunded = {r["round_id"] for r in ledger if r["kind"] == "refund"}
    open_ids = {r["id"] for r in rows if r["status"] in OPEN}
    delivered: Counter[str] = Counter()
    for r in rows:
        if r["status"] == "delivered":
            delivered[r["user_id"]] += r["cost"]
    net: Counter[str] = Counter()
    for r in ledger:
        net[r["user_id"]] += r["amount"] if r["kind"] == "reserve" else -r["amount"]
    return Snapshot(
        integrity=integrity,
        statuses=Counter(r["status"] for r in rows),
        open_ids=open_ids,
        reserved_open_ids=open_ids & (reserved - refunded),
        reserves=sum(1 for r in ledger if r["kind"] == "reserve"),
        refunds=len(refunded),
        refunded_ids=refunded,
        delivered_cost={u: c for u, c in delivered.items() if c},
        net={u: c for u, c in net.items() if c},
    )


class Worker:
    """The crash worker as a child process; always killed on the way out."""

    def __init__(self, data_dir: Path, log: Path, *args: str) -> None:
        self.data_dir, self.log, self.args = data_dir, log, args
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Worker:
        with self.log.open("ab") as stderr:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.core._crash_worker",
                str(self.data_dir),
                *self.args,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        return self

    async def line(self, timeout: float = 20) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, f"the worker died: {self.log.read_text(errors='replace')[-3000:]}"
        return raw.decode().strip()

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()


async def restart_and_check(settings: Settings, before: Snapshot, notices_before: int) -> int:
    """Open the core again (recovery runs in RoundService.start) and check what it did to the crashed run's rounds.
    Returns the number of pending notices afterwards."""
    db = settings.db_path
    async with open_core(settings, provider=FakeProvider()) as core:
        assert core.recovered == len(before.open_ids)
        notices = await core.services.notices.take(Platform.CONSOLE)
        reasons = {}
        for rid in before.open_ids:
            found = await core.store.get_round(rid)
            assert found is not None
            reasons[rid] = (found.state.value, found.reason)
    after = snapshot(db)
    assert after.integrity == "ok"
    assert {rid: reasons[rid] for rid in before.open_ids} == {rid: ("failed", "interrupted") for rid in before.open_ids}
    # Exactly the reserved-and-unfinished rounds got a refund, one each; nothing else changed in the ledger.
    assert after.refunded_ids - before.refunded_ids == before.reserved_open_ids
    assert after.refunds == before.refunds + len(before.reserved_open_ids)
    assert after.reserves == before.reserves  # no ledger row lost or added
    assert after.net == after.delivered_cost  # what users paid is exactly what they got
    assert after.delivered_cost == before.delivered_cost
    # One notice per interrupted round (whether it had reserved yet or not), none twice.
    assert len(notices) == notices_before + len(before.open_ids)
    assert len({n.id for n in notices}) == len(notices)
    # A second start finds nothing to do.
    async with open_core(settings, provider=FakeProvider()) as core:
        assert core.recovered == 0
        assert len(await core.services.notices.take(Platform.CONSOLE)) == len(notices)
    again = snapshot(db)
    assert (again.reserves, again.refunds, again.net) == (after.reserves, after.refunds, after.net)
    return len(notices)


async def test_sigkill_with_30_rounds_in_flight_refunds_each_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = settings_for(str(data))
    async with Worker(data, tmp_path / "worker.log", "--tag", "a", "--delivered", "5", "--inflight", "30") as worker:
        assert await worker.line() == "READY 35"  # 5 delivered + 30 in flight, every reserve committed
        await worker.kill()
    before = snapshot(settings.db_path)
    assert before.integrity == "ok"
    # At the moment of the kill: 4 stuck in delivery, 8 at the provider and 18 queued for a slot.
    assert before.statuses == {"delivered": 5, "delivering": 4, "running": 8, "queued": 18}
    assert before.reserves == 35 and before.refunds == 0 and len(before.reserved_open_ids) == 30

    pending = await restart_and_check(settings, before, notices_before=0)
    assert pending == 30

    # The interrupted users can go on, and the notices go out once.
    async with open_core(settings, provider=FakeProvider()) as core:
        notices = await core.services.notices.take(Platform.CONSOLE)
        texts = " ".join(n.text for n in notices)
        assert all(f"#{n}" in texts for n in range(6, 36))
        for notice in notices:
            await core.services.notices.sent(notice.id)
        assert await core.services.notices.take(Platform.CONSOLE) == []
        view = RecordingView()
        actor = Actor(Platform.CONSOLE, "1", "User 1")
        key = ChannelKey(Platform.CONSOLE, "crash", "crash-ch")
        await core.rounds.submit(RoundRequest(key, actor, "again", "after-restart"), view)
        assert view.result is not None and view.result.number == 36


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_repeated_kill_and_restart_cycles(tmp_path: Path) -> None:
    """Twenty runs on one data dir. Odd cycles are killed at READY (every state known); even ones keep starting
    rounds (some answered, some hanging, some over quota) and are killed after a random number of them,
    in the middle of whatever write was going on."""
    data = tmp_path / "data"
    settings = settings_for(str(data))
    rng = random.Random(20300101)
    pending = 0
    for cycle in range(20):
        stream = cycle % 2 == 1
        args = ["--tag", f"c{cycle}", "--delivered", str(rng.randint(0, 8)), "--inflight", str(rng.randint(10, 40))]
        async with Worker(data, tmp_path / "worker.log", *args, *(["--stream"] if stream else [])) as worker:
            assert (await worker.line()).startswith("READY")
            if stream:
                for _ in range(rng.randint(1, 150)):
                    await worker.line()
            await worker.kill()
        before = snapshot(settings.db_path)
        assert before.integrity == "ok", f"cycle {cycle}"
        pending = await restart_and_check(settings, before, notices_before=pending)


# Regression: a refusal raised inside the reserve transaction used to roll back the `refused` status, so the
# next start reported an over-quota request as "interrupted by a restart".
async def test_refusal_at_reserve_is_recorded_and_not_reported_as_interrupted(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(EASEL_DAILY_CREDITS=1)
    key = ChannelKey(Platform.CONSOLE, "c1", "ch1")
    alice = Actor(Platform.CONSOLE, "1", "Alice")
    async with open_core(settings, provider=FakeProvider()) as core:
        await core.rounds.submit(RoundRequest(key, alice, "one", "k1"), RecordingView())
        refused = RecordingView()
        await core.rounds.submit(RoundRequest(key, alice, "two", "k2"), refused)
        assert refused.refusal is not None and refused.refusal.reason == "over_quota" and refused.info is not None
        found = await core.store.get_round(refused.info.round_id)
        assert found is not None
        status = (found.state.value, found.reason)
    async with open_core(settings, provider=FakeProvider()) as core:
        recovered = core.recovered
        notices = await core.services.notices.take(Platform.CONSOLE)
    # The user was already told "over quota"; a restart must not tell them their round was interrupted.
    assert (status, recovered, notices) == (("refused", "over_quota"), 0, [])
