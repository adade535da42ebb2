"""The `easel` command as an operator runs it: subprocesses, real exit codes and messages."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

EASEL = [sys.executable, "-m", "bots.process.cli"]
ROOT = Path(__file__).resolve().parents[2]


def easel(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EASEL_", "OPENAI_", "DISCORD_", "TELEGRAM_"))}
    clean.update({"EASEL_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT), **env})
    return subprocess.run(
        [*EASEL, *args], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=60, check=False
    )


def test_run_without_key_or_token_names_what_is_missing(tmp_path: Path) -> None:
    result = easel(tmp_path, "run")
    assert result.returncode != 0
    assert "OPENAI_API_KEY" in result.stderr and "TELEGRAM_TOKEN or DISCORD_TOKEN" in result.stderr
    result = easel(tmp_path, "run", OPENAI_API_KEY="sk-test")
    assert result.returncode != 0 and "OPENAI_API_KEY" not in result.stderr


def test_bad_setting_is_named(tmp_path: Path) -> None:
    result = easel(tmp_path, "run", OPENAI_API_KEY="sk-test", TELEGRAM_TOKEN="1:x", EASEL_DAILY_CREDITS="lots")
    assert result.returncode != 0 and "EASEL_DAILY_CREDITS" in result.stderr


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv\nEASEL_DAILY_CREDITS=oops\n")
    result = easel(tmp_path, "run")
    assert "EASEL_DAILY_CREDITS" in result.stderr  # .env was read
    result = easel(tmp_path, "run", EASEL_DAILY_CREDITS="5")
    assert "EASEL_DAILY_CREDITS" not in result.stderr and "TELEGRAM_TOKEN" in result.stderr


def test_console_usage_backup_and_forget(tmp_path: Path) -> None:
    # The console needs a provider; with an unreachable endpoint the round fails cleanly and is not charged.
    result = easel(
        tmp_path,
        "console",
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        EASEL_PROVIDER_RETRIES="0",
    )
    assert result.returncode == 0
    usage = easel(tmp_path, "usage")
    assert usage.returncode == 0 and "platform" in usage.stdout
    backup = tmp_path / "copy.db"
    done = easel(tmp_path, "db", "backup", str(backup))
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again = easel(tmp_path, "db", "backup", str(backup))
    assert again.returncode != 0  # never overwrites silently
    forgot = easel(tmp_path, "forget", "console", "1")
    assert forgot.returncode == 0 and "ledger totals kept" in forgot.stdout
