"""`easel run` as an operator runs it: a subprocess against fake Telegram, Discord and OpenAI servers in the
test's process. Start-up summary, readiness, metrics counting a round, SIGTERM with a round in flight, fatal
platform errors (bad token, a second poller) and the restart back-off."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_openai import FakeOpenAI
from tests.fakes.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-process-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Easel:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def expect(self, text: str, timeout: float = 20) -> str:
        """Read stderr until a line contains `text`."""
        assert self.proc.stderr is not None
        for line in self.lines:
            if text in line:
                return line

        async def read() -> str:
            assert self.proc.stderr is not None
            while True:
                raw = await self.proc.stderr.readline()
                if not raw:
                    raise AssertionError(f"easel exited before logging {text!r}:\n" + "".join(self.lines))
                line = raw.decode()
                self.lines.append(line)
                if text in line:
                    return line

        return await asyncio.wait_for(read(), timeout)

    async def finish(self, timeout: float = 30) -> int:
        assert self.proc.stderr is not None
        rest = await asyncio.wait_for(self.proc.stderr.read(), timeout)
        self.lines.append(rest.decode())
        return await asyncio.wait_for(self.proc.wait(), timeout)

    @property
    def log(self) -> str:
        return "".join(self.lines)


@asynccontextmanager
async def easel_run(tmp_path: Path, **env: str) -> AsyncIterator[Easel]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EASEL_", "OPENAI_", "DISCORD_", "TELEGRAM_"))}
    clean.update({"OPENAI_API_KEY": KEY, "EASEL_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT), **env})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.process.cli",
        "run",
        cwd=tmp_path,
        env=clean,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    easel = Easel(proc)
    try:
        yield easel
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def telegram_env(tg: FakeTelegram, oai: FakeOpenAI) -> dict[str, str]:
    return {"TELEGRAM_TOKEN": tg.token, "EASEL_TELEGRAM_API_URL": tg.root, "OPENAI_BASE_URL": f"{oai.origin}/v1"}


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def poll(url: str, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, body = await get(url)
        except aiohttp.ClientConnectionError:  # not listening yet
            body = ""
        if text in body or time.monotonic() > deadline:
            assert text in body, body
            return body
        await asyncio.sleep(0.05)


async def test_lifecycle_ready_metrics_and_sigterm_refunds(tmp_path: Path) -> None:
    port = free_port()
    async with FakeTelegram() as tg, FakeOpenAI() as oai:
        env = telegram_env(tg, oai) | {"EASEL_HTTP_PORT": str(port), "EASEL_SHUTDOWN_GRACE": "0.5"}
        async with easel_run(tmp_path, **env) as easel:
            summary = await easel.expect("Easel is running")
            assert "bots=telegram" in summary and "gpt-image-2" in summary
            await tg.wait_for("getUpdates", timeout=20)
            status, body = await get(f"http://127.0.0.1:{port}/readyz")
            assert status == 200 and '"telegram": true' in body and '"database": true' in body

            user = tg.user("Ann", username="ann")
            chat = tg.private_chat(user)
            await tg.send_message(chat, user, "/imagine a red fox")
            await tg.wait_for("sendPhoto", timeout=20)
            # The charge is committed just after the upload returns: poll the other process's metrics briefly.
            delivered = 'easel_rounds_total{outcome="delivered",platform="telegram"} 1.0'
            metrics = await poll(f"http://127.0.0.1:{port}/metrics", delivered)
            assert 'easel_credits_spent_total{platform="telegram"} 1.0' in metrics

            oai.fail_next("hang")  # the next image call never answers
            await tg.send_message(chat, user, "/imagine a blue fox")
            await oai.wait_for("POST /v1/responses", count=2, timeout=20)
            started = time.monotonic()
            easel.proc.send_signal(signal.SIGTERM)
            assert await easel.finish() == 0
            assert time.monotonic() - started < 15
        texts = [c.params.get("text", "") for c in tg.calls_to("sendMessage")]
        assert any("not charged" in text for text in texts), texts
        log = easel.log
        assert KEY not in log and tg.token not in log and "/file/bot" not in log

    with sqlite3.connect(tmp_path / "data" / "easel.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT status FROM rounds ORDER BY id").fetchall()
        assert [r[0] for r in rows] == ["delivered", "failed"]
        net = db.execute(
            "SELECT round_id, SUM(CASE kind WHEN 'reserve' THEN amount ELSE -amount END) FROM ledger "
            "WHERE round_id IS NOT NULL GROUP BY round_id ORDER BY round_id"
        ).fetchall()
        assert net == [(1, 1), (2, 0)]  # the interrupted round was refunded


async def test_bad_telegram_token_exits_non_zero_then_backs_off(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeOpenAI() as oai:
        env = telegram_env(tg, oai) | {"TELEGRAM_TOKEN": "123456:" + "x" * 35}
        async with easel_run(tmp_path, **env) as easel:
            assert await easel.finish() == 78
            assert "123456:xxx" not in easel.log and "TELEGRAM_TOKEN" in easel.log
        # The next start waits instead of logging in again at once (no hot loop under any supervisor), and
        # /healthz answers meanwhile (/readyz says not ready) so a container health check does not kill it.
        port = free_port()
        async with easel_run(tmp_path, **env, EASEL_HTTP_PORT=str(port)) as easel:
            await easel.expect("waiting")
            await poll(f"http://127.0.0.1:{port}/healthz", '"ok"')
            status, body = await get(f"http://127.0.0.1:{port}/readyz")
            assert status == 503 and "waiting_after_fatal_exit" in body
            easel.proc.send_signal(signal.SIGTERM)
            assert await easel.finish() == 0
        assert len(tg.calls_to("getMe")) <= 1


async def test_a_changed_token_skips_the_back_off(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeOpenAI() as oai:
        bad = telegram_env(tg, oai) | {"TELEGRAM_TOKEN": "123456:" + "x" * 35}
        async with easel_run(tmp_path, **bad) as easel:
            assert await easel.finish() == 78
            assert "new token" in easel.log or "TELEGRAM_TOKEN" in easel.log
        # The operator fixed the token: the next start connects at once instead of waiting.
        async with easel_run(tmp_path, **telegram_env(tg, oai)) as easel:
            await easel.expect("Easel is running")
            assert "the token changed" in easel.log and "before connecting again" not in easel.log
            easel.proc.send_signal(signal.SIGTERM)
            assert await easel.finish() == 0


async def test_second_poller_conflict_exits_clearly(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeOpenAI() as oai, easel_run(tmp_path, **telegram_env(tg, oai)) as easel:
        await easel.expect("Easel is running")
        await tg.wait_for("getUpdates", timeout=20)
        tg.set_webhook_conflict()
        assert await easel.finish() == 78
        assert "another instance" in easel.log


async def test_bad_discord_token_exits_non_zero(tmp_path: Path) -> None:
    async with FakeDiscord() as dc, FakeOpenAI() as oai:
        env = {
            # Well shaped (so it reaches the server), but not the fake's token.
            "DISCORD_TOKEN": "bm90LXRoZS10b2tlbg.GhT6pQ.d3JvbmctYnV0LXdlbGwtc2hhcGVk",
            "EASEL_DISCORD_API_URL": dc.api_url,
            "EASEL_DISCORD_GATEWAY_URL": dc.gateway_url,
            "OPENAI_BASE_URL": f"{oai.origin}/v1",
        }
        async with easel_run(tmp_path, **env) as easel:
            assert await easel.finish() == 78
            assert "DISCORD_TOKEN" in easel.log
        logins = [c for c in dc.calls if "users/@me" in c.method or c.method == "get_me"]
        assert len(logins) <= 1


async def _open_rounds(db: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT status, COUNT(*) FROM rounds GROUP BY status").fetchall()
        return [(str(status), int(count)) for status, count in rows]


async def _accepted_in_background(db: Path) -> bool:
    """The round's response id is stored: the provider holds it in background mode (what a restart resumes)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT COUNT(*) FROM rounds WHERE response_id IS NOT NULL AND bg_mode = 1").fetchone()
        return int(row[0]) == 1


async def _charged(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN amount WHEN 'refund' THEN -amount END), 0) FROM ledger"
        ).fetchone()
        return int(row[0])


async def test_sigkill_during_a_background_round_then_restart_delivers_it_once(tmp_path: Path) -> None:
    """DESIGN section 3: a round the provider runs in the background is picked up again after a crash
    (SIGKILL): delivered once, charged once, never made twice, and nobody is told it was interrupted."""
    async with FakeTelegram() as tg, FakeOpenAI() as oai:
        thinking = oai.hold("thinking")  # the provider works on it (in the background) until the test says
        env = telegram_env(tg, oai) | {"EASEL_PARTIAL_IMAGES": "0"}
        user = tg.user("Ann", username="ann")
        chat = tg.private_chat(user)
        async with easel_run(tmp_path, **env) as easel:
            await easel.expect("Easel is running")
            await tg.send_message(chat, user, "/imagine a patient fox")
            await oai.wait_for("POST /v1/responses", timeout=20)
            db = tmp_path / "data" / "easel.db"
            deadline = time.monotonic() + 20
            while not await _accepted_in_background(db):
                assert time.monotonic() < deadline, await _open_rounds(db)
                await asyncio.sleep(0.05)
            easel.proc.send_signal(signal.SIGKILL)
            assert await easel.proc.wait() == -signal.SIGKILL
        tg.app_errors.clear()  # the killed client's half-open requests
        oai.app_errors.clear()
        thinking.set()  # the provider finishes the image while Easel is down
        async with easel_run(tmp_path, **env) as easel:
            await easel.expect("Easel is running")
            await tg.wait_for("sendPhoto", timeout=30)
            deadline = time.monotonic() + 20
            while ("delivered", 1) not in await _open_rounds(tmp_path / "data" / "easel.db"):
                assert time.monotonic() < deadline, await _open_rounds(tmp_path / "data" / "easel.db")
                await asyncio.sleep(0.05)
            easel.proc.send_signal(signal.SIGTERM)
            assert await easel.finish() == 0
        photos = [c for c in tg.calls_to("sendPhoto") if str(c.params.get("caption", "")).startswith("#1")]
        edited = [c for c in tg.calls_to("editMessageMedia")]
        assert len(photos) + len(edited) == 1  # one image in the chat
        assert len(oai.calls_to("POST /v1/responses")) == 1  # never made twice
        assert await _charged(tmp_path / "data" / "easel.db") == 1  # charged once
        texts = [str(c.params.get("text", "")) for c in tg.calls_to("sendMessage")]
        assert not any("interrupted" in t or "restart" in t for t in texts), texts
