"""Three `easel run` workers on one PostgreSQL, with the fake Telegram and the fake OpenAI in the test process:

- N rounds from M users: every request gets exactly one round and ends (delivered, or refused when its user
  already had two in flight), charged = delivered, the provider never sees more calls at once than the cap nor
  more than two of one user, and the rounds spread over the workers;
- SIGKILL of a worker with rounds in flight: the survivors take its rounds over and refund them (foreground
  calls cannot be resumed) within a bounded time, nothing charged twice, and a new polling leader takes over
  with no update lost."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.fakes.fake_telegram import FakeTelegram
from tests.reliability.conftest import TELEGRAM_TOKEN, wait_until
from tests.workers.fleet import CountingOpenAI, outcome, start_worker, stop, ticking, worker_env

CAP = 4
TAKEOVER = 15  # EASEL_TAKEOVER_AFTER in the kill test (the default is 30): heartbeats every 5 s
ADOPT_BUDGET = TAKEOVER + TAKEOVER / 3 + 5.0  # stale after TAKEOVER, then the next upkeep pass, then the work


async def _send(tg: FakeTelegram, rounds: int, users: int, tag: str) -> list[str]:
    # Private chats: the adapter paces sends into a group to Telegram's 20 a minute, which would be the subject.
    people = [tg.user(f"{tag}P{i}", f"{tag.lower()}p{i}") for i in range(users)]
    chats = [tg.private_chat(person) for person in people]
    asked = []
    for n in range(rounds):
        chat = chats[n % users]
        sent = await tg.send_message(chat, people[n % users], f"/imagine {tag} picture {n}")
        asked.append(f"tg:{chat['id']}:{sent['message_id']}")
    return asked


@pytest.mark.parametrize(("rounds", "users"), [(200, 50), pytest.param(1000, 200, marks=pytest.mark.slow, id="1000")])
@pytest.mark.timeout(180)
async def test_three_workers_share_the_bot(tmp_path: Path, pg_url: str, rounds: int, users: int) -> None:
    async with CountingOpenAI(delay=0.3) as oai, FakeTelegram(token=TELEGRAM_TOKEN) as tg:
        names = ["w0", "w1", "w2"]
        procs = [
            await start_worker(worker_env(n, tmp_path, pg_url, tg, oai, CAP), tmp_path / f"{n}.log") for n in names
        ]
        try:
            await tg.wait_for("getUpdates", timeout=30)
            started = time.monotonic()
            asked = await _send(tg, rounds, users, "A")
            await ticking(tg, lambda: _finished(pg_url, asked), timeout=120, what="every request answered")
            elapsed = time.monotonic() - started
            result = outcome(pg_url)
        finally:
            codes = await stop(procs)
    logs = "".join((tmp_path / f"{n}.log").read_text(errors="replace") for n in names)
    print(
        f"\n{rounds} rounds, {users} users, 3 workers: {elapsed:.1f} s; {dict(result.by_state)}; "
        f"per worker {dict(result.owners)}; provider peak {oai.peak}"
    )
    assert set(asked) <= result.idem_keys and len(result.idem_keys) == rounds
    assert result.open_rounds == 0
    assert result.by_state["delivered"] >= rounds // 2
    assert set(result.by_state) <= {"delivered", "refused"}, result.by_state
    assert result.charged == result.delivered_cost
    assert result.reserves_per_round <= 1 and result.refunds_per_round <= 1
    shown = sum(len(tg.calls_to(m)) for m in ("sendPhoto", "sendDocument", "editMessageMedia"))
    assert shown == result.by_state["delivered"]  # each image reached the chat once (no previews asked)
    assert oai.peak <= CAP
    assert max(oai.user_peak.values()) <= 2  # EASEL_USER_CONCURRENCY, over the whole fleet
    assert sum(1 for n in result.owners.values() if n) >= 2, result.owners  # the work fanned out
    assert codes == [0, 0, 0], logs[-3000:]
    with psycopg.connect(pg_url) as conn:  # every worker's messages took their turn from the fleet's allowance
        assert conn.execute("SELECT name FROM rate_buckets").fetchall() == [("telegram",)]
    assert "fleet's Telegram allowance cannot be asked" not in logs
    assert "Traceback" not in logs, logs[logs.index("Traceback") - 500 :][:3000]


def _finished(pg_url: str, asked: list[str]) -> bool:
    result = outcome(pg_url)
    return result.open_rounds == 0 and set(asked) <= result.idem_keys


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # a body cut off by the SIGKILL
async def test_a_killed_worker_and_a_killed_leader(tmp_path: Path, pg_url: str) -> None:
    async with CountingOpenAI(delay=0.05) as oai, FakeTelegram(token=TELEGRAM_TOKEN) as tg:
        names = ["w0", "w1", "w2"]
        envs = {n: worker_env(n, tmp_path, pg_url, tg, oai, CAP) | {"EASEL_TAKEOVER_AFTER": str(TAKEOVER)}
                for n in names}
        procs = {n: await start_worker(envs[n], tmp_path / f"{n}.log") for n in names}
        try:
            await tg.wait_for("getUpdates", timeout=30)
            # Rounds in flight: the provider parks every call until a worker is killed.
            oai.parked.clear()
            asked = await _send(tg, 40, 20, "K")
            await wait_until(oai, lambda: oai.in_flight_now >= CAP, timeout=30, what="calls parked at the provider")
            victim = _owner_of_a_parked_round(pg_url)
            procs[victim].send_signal(signal.SIGKILL)
            assert await procs[victim].wait() == -signal.SIGKILL
            oai.fake_errors.clear()  # requests cut off by the kill
            killed_at = time.monotonic()
            oai.parked.set()
            await ticking(
                tg,
                lambda: _finished(pg_url, asked),
                timeout=ADOPT_BUDGET + 30,
                what="the survivors finished or refunded every round",
            )
            recovery = time.monotonic() - killed_at
            # Now kill whichever worker polls: another takes the lead and no update is lost.
            polls = len(tg.calls_to("getUpdates"))
            leader = _leader(tmp_path, [n for n in names if n != victim])
            procs[leader].send_signal(signal.SIGKILL)
            assert await procs[leader].wait() == -signal.SIGKILL
            tg.fake_errors.clear()
            more = await _send(tg, 10, 5, "L")
            await ticking(
                tg,
                lambda: _finished(pg_url, asked + more) and len(tg.calls_to("getUpdates")) > polls,
                timeout=ADOPT_BUDGET + 30,
                what="a new leader polled and every update was handled",
            )
            result = outcome(pg_url)
        finally:
            codes = await stop(list(procs.values()))
    logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace") for n in names}
    print(f"\nkill: recovery {recovery:.1f} s; {dict(result.by_state)}; per worker {dict(result.owners)}")
    assert result.open_rounds == 0
    assert set(asked + more) <= result.idem_keys
    assert result.charged == result.delivered_cost
    assert result.reserves_per_round <= 1 and result.refunds_per_round <= 1
    assert oai.peak <= CAP
    assert TAKEOVER <= recovery < ADOPT_BUDGET + 10  # not before the worker looks dead, and soon after
    survivor = next(n for n in names if n not in (victim, leader))
    assert codes[names.index(survivor)] == 0, logs[survivor][-3000:]


def _owner_of_a_parked_round(pg_url: str) -> str:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT owner FROM rounds WHERE status = 'running' ORDER BY id LIMIT 1").fetchone()
    assert row is not None
    return str(row[0])


def _leader(tmp_path: Path, names: list[str]) -> str:
    leaders = [
        n
        for n in names
        if "now leads telegram-poll" in (tmp_path / f"{n}.log").read_text(errors="replace")
        and "no longer leads" not in (tmp_path / f"{n}.log").read_text(errors="replace")
    ]
    assert leaders, "no surviving worker says it leads"
    return leaders[-1]
