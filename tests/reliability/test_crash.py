"""Crash: `easel run` (python -m bots.process.cli run) as a subprocess against FakeTelegram and FakeOpenAI running in
the test process; 50 rounds in flight (the provider parks every request past a seeded few), SIGKILL at a
seeded moment, restart on the same data directory. Per cycle: `PRAGMA integrity_check` is ok after the kill;
within 15 s of the restart every round is finished or refunded and every interrupted round's user was told
(the fake received the notice in that chat); no round charged twice; no request lost. The last process is
stopped with SIGTERM and must exit 0. Fast tier: 2 cycles; slow tier: 20."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.fakes._base import FakeServer
from tests.fakes.fake_openai import FakeOpenAI
from tests.fakes.fake_telegram import FakeTelegram
from tests.reliability.conftest import (
    FILE_URL_MARK,
    OPENAI_KEY,
    REPO,
    TELEGRAM_TOKEN,
    integrity,
    ledger,
    read_db,
    secret_hits,
    wait_until,
    write_summary,
)

SEED = int(os.environ.get("EASEL_RELIABILITY_SEED", "7"))
IN_FLIGHT = 50
CAP = 8
RECOVERY_BUDGET = 15.0


class GatedOpenAI(FakeOpenAI):
    """Lets `allow` requests through; later ones park until the server stops (a slow generation)."""

    def __init__(self) -> None:
        self.allow = 0
        self.arrived = 0
        self._gates: list[asyncio.Event] = []
        super().__init__()

    async def _handle(self, request: web.Request, endpoint: str, body: Any) -> web.StreamResponse:
        self.arrived += 1
        self._notify()
        if self.arrived > self.allow:
            gate = asyncio.Event()
            self._gates.append(gate)
            await gate.wait()
        return await super()._handle(request, endpoint, body)

    async def before_stop(self) -> None:
        for gate in self._gates:
            gate.set()
        await super().before_stop()


def _env(data: Path, tg: FakeTelegram, oai: FakeOpenAI) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")}
    return {
        **keep, "PYTHONPATH": str(REPO), "TELEGRAM_TOKEN": TELEGRAM_TOKEN, "EASEL_TELEGRAM_API_URL": tg.root,
        "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": f"{oai.origin}/v1", "EASEL_DATA_DIR": str(data),
        "EASEL_PROVIDER_CONCURRENCY": str(CAP), "EASEL_USER_CONCURRENCY": "50", "EASEL_USER_RATE": "10000",
        "EASEL_DAILY_CREDITS": "100000",
        "EASEL_PARTIAL_IMAGES": "0", "EASEL_PROVIDER_TIMEOUT": "120", "EASEL_SHUTDOWN_GRACE": "1",
        "EASEL_LOG_LEVEL": "DEBUG",
        # Foreground calls: the gate parks each round's one request. (Background rounds resumed after a restart
        # are tests/core/test_rounds.py's subject.)
        "EASEL_BACKGROUND_MODE": "off",
    }


async def _start(env: dict[str, str], cwd: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots.process.cli", "run", env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=out,
        )


def _state(db: Path) -> tuple[int, int]:
    """(open rounds, unsent notices), read while the bot runs."""
    try:
        with read_db(db) as conn:
            open_rounds = conn.execute(
                "SELECT COUNT(*) FROM rounds WHERE status IN ('requested', 'queued', 'running', 'delivering')"
            ).fetchone()[0]
            unsent = conn.execute("SELECT COUNT(*) FROM notices WHERE sent_at IS NULL").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return (1, 1)
    return int(open_rounds), int(unsent)


# A SIGKILL can cut an image upload to the fake OpenAI mid-body; aiohttp then drops the half-read multipart
# spool without closing it. That ResourceWarning is the crash we cause, not a leak in Easel.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("cycles", [2, pytest.param(20, marks=[pytest.mark.slow, pytest.mark.timeout(600)], id="20")])
async def test_sigkill_with_rounds_in_flight_then_restart(tmp_path: Path, cycles: int) -> None:
    await _cycles(tmp_path, cycles, just_fetched=False)


async def test_sigkill_right_after_a_batch_is_confirmed_loses_nothing(tmp_path: Path) -> None:
    await _cycles(tmp_path, 1, just_fetched=True)


async def _cycles(tmp_path: Path, cycles: int, *, just_fetched: bool) -> None:
    rng = random.Random(SEED)
    data, log = tmp_path / "data", tmp_path / "easel.log"
    db = data / "easel.db"
    figures: list[dict[str, Any]] = []
    async with GatedOpenAI() as oai, FakeTelegram(token=TELEGRAM_TOKEN) as tg:
        env = _env(data, tg, oai)
        # Spread over enough groups that Telegram's 20 messages a minute per group (which Easel keeps to) does not
        # pace the recovery: each group sees two or three rounds.
        groups = [tg.group_chat(f"G{g}") for g in range(16)]
        people = [tg.user(f"P{i}", f"p{i}") for i in range(10)]
        proc = await _start(env, tmp_path, log)
        await tg.wait_for("getUpdates", timeout=30)
        asked: list[str] = []
        try:
            for cycle in range(cycles):
                cycle_started = time.monotonic()
                finished_first = rng.randint(0, 10)
                oai.allow = oai.arrived + finished_first
                kill_after = oai.arrived + finished_first + rng.randint(1, CAP)
                photos_after = len(tg.calls_to("sendPhoto")) + rng.randint(0, finished_first)
                polls_after = len(tg.calls_to("getUpdates")) + 1  # the parked poll returns the batch, the next confirms
                for n in range(IN_FLIGHT):
                    chat = groups[n % len(groups)]
                    sent = await tg.send_message(chat, rng.choice(people), f"/imagine cycle {cycle} picture {n}")
                    asked.append(f"tg:{chat['id']}:{sent['message_id']}")
                if just_fetched:
                    await wait_until(tg, lambda: len(tg.calls_to("getUpdates")) >= polls_after, timeout=30,
                                     what="the batch fetched and confirmed")
                else:
                    await wait_until(oai, lambda: oai.arrived >= kill_after, timeout=30,
                                     what="rounds in flight at the provider")
                    await wait_until(tg, lambda: len(tg.calls_to("sendPhoto")) >= photos_after, timeout=30,
                                     what="a few rounds delivered")
                open_at_kill = _state(db)[0]
                to_kill = time.monotonic() - cycle_started
                proc.send_signal(signal.SIGKILL)
                assert await proc.wait() == -signal.SIGKILL
                _forgive_dead_client(tg)
                _forgive_dead_client(oai)  # an image request cut off mid-body by the kill
                check = integrity(db)
                notices_before = len(_notices(tg))
                oai.allow = 10**9  # after the restart the provider answers (redelivered updates can finish)
                restarted = time.monotonic()
                proc = await _start(env, tmp_path, log)
                # Re-checked on every call the fake receives (the notices and redelivered rounds are calls) and
                # on a tick (a round's commit comes after its last call). A request the old process fetched but
                # never claimed is claimed (replayed from the inbox) by the new one.
                await _wait_ticking(
                    tg, lambda c=cycle, b=notices_before: _state(db)[0] == 0
                    and len(_notices(tg)) - b >= len(_interrupted(db, c)) and not _unclaimed(db, asked),
                    timeout=RECOVERY_BUDGET + 15, what="every request claimed, every round finished or refunded, "
                    "every user told")
                recovery = time.monotonic() - restarted
                book = ledger(db)
                told = _notices(tg)[notices_before:]
                interrupted = _interrupted(db, cycle)
                # Redelivered (unconfirmed) updates are claimed by the new process; confirmed-but-unclaimed are lost.
                missing = [key for key in asked if key not in book.idem_keys]
                figures.append({"cycle": cycle, "kill": "just-fetched" if just_fetched else "mid-provider",
                                "open_at_kill": open_at_kill, "delivered": book.delivered,
                                "to_kill_s": round(to_kill, 2),
                                "integrity": check,
                                "recovery_s": round(recovery, 2), "interrupted": len(interrupted),
                                "notices": len(told), "lost_requests": len(missing), "problems": book.problems[:3]})
                assert check == "ok", figures[-1]
                assert recovery < RECOVERY_BUDGET, figures[-1]
                assert book.problems == [], figures[-1]
                assert missing == [], figures[-1]
                told_numbers = sorted((int(c.params["chat_id"]), _number(c.params["text"])) for c in told)
                assert told_numbers == sorted(interrupted), (told_numbers, interrupted)
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    book = ledger(db)
    output = log.read_text(encoding="utf-8", errors="replace")
    leaks = secret_hits(output, [TELEGRAM_TOKEN, OPENAI_KEY, FILE_URL_MARK])
    write_summary(f"crash-{cycles}" + ("-just-fetched" if just_fetched else ""), seed=SEED, cycles=cycles,
                  in_flight=IN_FLIGHT, exit_code=code, unsent_notices_at_exit=_state(db)[1],
                  final_ledger=book.summary(), log_bytes=len(output), log_secret_hits=leaks, per_cycle=figures)
    assert code == 0, output[-2000:]
    assert book.problems == [] and integrity(db) == "ok"
    assert _state(db)[0] == 0, "rounds left open"  # unsent-notice rows: see the summary (flaky, under study)
    assert leaks == {}, leaks


async def _wait_ticking(tg: FakeTelegram, predicate: Any, timeout: float, what: str) -> None:
    """`wait_until`, also re-checked every 50 ms: the database belongs to another process, and nothing tells
    the test when that process commits."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.05)
            tg._notify()

    ticker = asyncio.create_task(tick())
    try:
        await wait_until(tg, predicate, timeout=timeout, what=what)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def _unclaimed(db: Path, asked: list[str]) -> bool:
    claimed = ledger(db).idem_keys
    return any(key not in claimed for key in asked)


def _forgive_dead_client(fake: FakeServer) -> None:
    """A request cut off by the SIGKILL shows up as a FAKE BUG (the fake reads a body that never completes):
    that is the crash we caused, not a fake bug. Other fake errors still fail the test."""
    fake.fake_errors[:] = [e for e in fake.fake_errors if "ConnectionResetError: Connection lost" not in e]


def _notices(tg: FakeTelegram) -> list[Any]:
    return [c for c in tg.calls_to("sendMessage") if str(c.params.get("text", "")).startswith("Your image #")]


def _number(text: str) -> int:
    return int(text.removeprefix("Your image #").split(" ", 1)[0])


def _interrupted(db: Path, cycle: int) -> list[tuple[int, int]]:
    with read_db(db) as conn:
        rows = conn.execute(
            "SELECT channel, number FROM rounds WHERE reason = 'interrupted' AND prompt LIKE ?",
            (f"cycle {cycle} %",),
        ).fetchall()
    return [(int(r["channel"]), int(r["number"])) for r in rows]
