"""`easel console` as a new user runs it, against the fake OpenAI server: the real SDK over a real socket,
both provider routes, a generation and an edit round."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.fakes.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]


async def console(tmp_path: Path, fake: FakeOpenAI, script: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EASEL_", "OPENAI_", "DISCORD_", "TELEGRAM_"))}
    clean.update(
        {
            "OPENAI_API_KEY": "sk-test-console-key-123456",
            "OPENAI_BASE_URL": f"{fake.origin}/v1",
            "EASEL_DATA_DIR": str(tmp_path / "data"),
            "PYTHONPATH": str(ROOT),
            **env,
        }
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.process.cli",
        "console",
        cwd=tmp_path,
        env=clean,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(script.encode()), 60)
    assert proc.returncode == 0, err.decode()
    assert b"sk-test-console-key" not in out + err
    return out.decode()


@pytest.mark.parametrize("route", ["responses", "images"])
async def test_console_generates_and_edits(tmp_path: Path, route: str) -> None:
    async with FakeOpenAI() as fake:
        out = await console(tmp_path, fake, "a red fox\nreply 1 make it blue\nquota\n", EASEL_IMAGE_API=route)
        saved = [Path(line.split("saved: ")[1]) for line in out.splitlines() if "saved: " in line]
        assert len(saved) == 2, out
        assert saved[0].read_bytes() == fake.images[0] and saved[1].read_bytes() == fake.images[1]
        assert "8 credits left today" in out
        if route == "responses":
            first, second = fake.calls_to("POST /v1/responses")
            assert first.params.get("previous_response_id") is None
            assert second.params["previous_response_id"] == next(iter(fake.responses))
        else:
            assert len(fake.calls_to("POST /v1/images/generations")) == 1
            edit = fake.calls_to("POST /v1/images/edits")[0]
            assert fake.images[0] in edit.files.values()
