"""The `easel` command as an operator runs it: subprocesses, real exit codes and messages."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bots.process.cli import version
from core.events import Platform
from core.store.sqlite import SqliteStore

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


def test_version(tmp_path: Path) -> None:
    result = easel(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"easel {version()}"
    assert version()[0].isdigit()


@pytest.mark.parametrize(
    "args", [("usage",), ("forget", "telegram", "123"), ("forget", "telegram", "@alice"), ("db", "backup", "x.db")]
)
def test_commands_on_existing_data_refuse_a_missing_database(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = easel(tmp_path, *args)
    assert result.returncode == 1
    assert "there is no database at" in result.stderr and "EASEL_DATA_DIR" in result.stderr
    assert not (tmp_path / "data").exists()  # nothing created by mistake


def _seed(data_dir: Path) -> None:
    """A real database (the store's schema) with one user seen as @alice."""

    async def seed() -> None:
        async with SqliteStore(data_dir / "easel.db") as store:
            await store.remember_user(Platform.TELEGRAM, "4242", "alice", "Alice", datetime.now(UTC))

    asyncio.run(seed())


def test_forget_accepts_an_at_username_easel_has_seen(tmp_path: Path) -> None:
    _seed(tmp_path / "data")
    done = easel(tmp_path, "forget", "telegram", "@alice")
    assert done.returncode == 0, done.stderr
    assert "telegram:4242 (@alice)" in done.stdout and "ledger totals kept" in done.stdout
    unseen = easel(tmp_path, "forget", "telegram", "@nobody")
    assert unseen.returncode == 1 and "has not seen @nobody" in unseen.stderr
    bad = easel(tmp_path, "forget", "telegram", "１２３")
    assert bad.returncode == 78 and "numeric user id" in bad.stderr


def test_usage_reads_the_store(tmp_path: Path) -> None:
    _seed(tmp_path / "data")
    result = easel(tmp_path, "usage")
    assert result.returncode == 0, result.stderr
    assert "platform" in result.stdout and "(no rounds this month)" in result.stdout


def test_backup_into_a_directory_writes_a_dated_file(tmp_path: Path) -> None:
    _seed(tmp_path / "data")
    folder = tmp_path / "backups"
    folder.mkdir()
    done = easel(tmp_path, "db", "backup", str(folder))
    assert done.returncode == 0, done.stderr
    (written,) = folder.iterdir()
    assert re.fullmatch(r"easel-\d{8}-\d{6}\.db", written.name) and str(written) in done.stdout
    assert written.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(written) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_bad_value_lists_the_valid_ones(tmp_path: Path) -> None:
    result = easel(tmp_path, "run", OPENAI_API_KEY="sk-test", TELEGRAM_TOKEN="1:x", EASEL_IMAGE_API="dalle")
    assert result.returncode == 78
    assert "EASEL_IMAGE_API must be one of: responses, images" in result.stderr


def test_operators_accept_ascii_digits_only(tmp_path: Path) -> None:
    result = easel(tmp_path, "run", OPENAI_API_KEY="sk-test", TELEGRAM_TOKEN="1:x", EASEL_OPERATORS="telegram:１２３")
    assert result.returncode == 78 and "EASEL_OPERATORS" in result.stderr and "telegram:１２３" in result.stderr


def test_an_unknown_easel_variable_is_a_warning_with_the_nearest_name(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("EASEL_DAYLY_CREDITS=3\n")
    result = easel(tmp_path, "usage", EASEL_IMAGE_MODLE="x")
    assert "EASEL_DAYLY_CREDITS" in result.stderr and "did you mean EASEL_DAILY_CREDITS?" in result.stderr
    assert "did you mean EASEL_IMAGE_MODEL?" in result.stderr
    assert "there is no database" in result.stderr  # a warning, not the reason it stopped


@pytest.mark.parametrize(
    ("name", "token", "expected"),
    [
        ("TELEGRAM_TOKEN", "my telegram token", "TELEGRAM_TOKEN does not look like a bot token"),
        ("DISCORD_TOKEN", "0123456789abcdef0123456789abcdef", "DISCORD_TOKEN does not look like a bot token"),
    ],
)
def test_a_token_of_the_wrong_shape_is_refused_before_any_connection(
    tmp_path: Path, name: str, token: str, expected: str
) -> None:
    # The API URLs point at a closed port: the refusal must come before any attempt to connect.
    result = easel(
        tmp_path,
        "run",
        OPENAI_API_KEY="sk-test",
        EASEL_TELEGRAM_API_URL="http://127.0.0.1:9",
        EASEL_DISCORD_API_URL="http://127.0.0.1:9/api/v10",
        **{name: token},
    )
    assert result.returncode == 78 and expected in result.stderr and token not in result.stderr
    assert not (tmp_path / "data").exists()
