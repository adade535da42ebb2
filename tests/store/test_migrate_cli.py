"""`easel db migrate --to URL` from outside the store: a SQLite data directory (rounds, ledger rows, an image
file) copied into a throwaway PostgreSQL database, verified, reported without the URL's password; refusals and
a failed verification exit non-zero. Also the PostgreSQL image store the copied images land in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bots.process.config import Settings, load_settings
from bots.process.migrate import migrate_command, redact
from core.provider.cache import ImageCache
from core.records import Facts, ModVerb
from core.store.pg_images import PgImageStore
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore
from tests.store.support import KEY, NOW, TODAY, YESTERDAY_NOON, change, new_round, reservation

PNG = b"\x89PNG\r\n\x1a\n" + b"fake image bytes" * 50


def _settings(data_dir: Path) -> Settings:
    return load_settings({"EASEL_DATA_DIR": str(data_dir), "OPENAI_API_KEY": "sk-test"}, dotenv=None)


async def _fill(settings: Settings) -> str:
    """A few rounds and ledger rows in SQLite, and one image file; returns the image's sha."""
    sha = ImageCache(settings.image_dir, max_age_days=30, max_bytes=0).put(PNG, "image/png")
    async with SqliteStore(settings.db_path) as store:
        first = await store.create_round(new_round("ann"), YESTERDAY_NOON)
        await store.reserve(reservation(first.id, 2, now=YESTERDAY_NOON))
        await store.deliver(first.id, KEY, ["m1"], Facts(image_sha=sha, mime="image/png"), YESTERDAY_NOON)
        second = await store.create_round(new_round("bob", parent_id=first.id), NOW)
        await store.reserve(reservation(second.id, 3))
        await store.moderate(change(ModVerb.GRANT, "ann", 4))
    return sha


def _with_password(url: str) -> str:
    return url.replace("postgres@", "postgres:hunter2secret@", 1)  # the test cluster trusts, so any password works


async def test_migrate_copies_verifies_and_hides_the_password(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path / "data")
    sha = await _fill(settings)
    url = _with_password(pg_url)

    code = await _run_in_thread(settings, url)

    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "hunter2secret" not in out + err
    assert "postgres:***@" in out
    assert "verified" in out
    async with SqliteStore(settings.db_path) as old, PostgresStore(pg_url) as new:
        for user in ("ann", "bob"):
            for day in (TODAY, YESTERDAY_NOON.strftime("%Y-%m-%d")):
                assert await new.balance(KEY.platform, KEY.community, user, day, 10) == await old.balance(
                    KEY.platform, KEY.community, user, day, 10
                )
        assert (await new.get_round(1)) == (await old.get_round(1))
    with PgImageStore(pg_url) as images:
        assert images.get(sha, "image/png") == PNG


async def test_migrate_refuses_without_a_database_or_a_postgres_url(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path / "empty")
    assert await _run_in_thread(settings, pg_url) == 2
    assert "no SQLite database" in capsys.readouterr().err
    assert not settings.db_path.exists()  # refusing does not create one

    settings = _settings(tmp_path / "data")
    await _fill(settings)
    assert await _run_in_thread(settings, "mysql://root:topsecret@db/easel") == 2
    err = capsys.readouterr().err
    assert "postgresql://" in err and "topsecret" not in err


async def test_migrate_fails_when_the_copy_does_not_verify(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path / "data")
    sha = await _fill(settings)
    damaged = settings.image_dir / sha[:2] / f"{sha}.png"
    damaged.write_bytes(b"not what the name says")

    assert await _run_in_thread(settings, pg_url) == 1
    out, err = capsys.readouterr()
    assert "did NOT verify" in err and "damaged" in err
    assert "images                 1 -> 0" in out


async def test_migrate_refuses_a_target_that_holds_data(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path / "data")
    await _fill(settings)
    async with PostgresStore(pg_url) as target:
        await target.create_round(new_round("zed"), NOW)
    assert await _run_in_thread(settings, _with_password(pg_url)) == 1
    err = capsys.readouterr().err
    assert "not empty" in err and "hunter2secret" not in err


def test_pg_image_store_is_content_addressed_with_retention(pg_url: str) -> None:
    import asyncio

    async def migrate() -> None:
        async with PostgresStore(pg_url):
            pass

    asyncio.run(migrate())
    with PgImageStore(pg_url, max_age_days=1, max_bytes=150) as images:
        first = images.put(b"a" * 100, "image/png")
        assert images.put(b"a" * 100, "image/png") == first  # same bytes, same key, one row
        assert images.stats() == (1, 100)
        assert images.get(first, "image/png") == b"a" * 100
        assert images.get(first, "image/jpeg") is None
        second = images.put(b"b" * 100, "image/webp")
        report = images.prune()  # 200 bytes over a 150 cap: the least recently used goes
        assert (report.removed, report.kept) == (1, 1)
        assert images.get(first, "image/png") is None and images.get(second, "image/webp") == b"b" * 100
        assert images.prune(NOW.replace(year=2100) + timedelta(days=2)).kept == 0  # past the age limit
        images.put(b"c", "image/png")
        images.delete(images.put(b"c", "image/png"), "image/png")
        assert images.stats() == (0, 0)


def test_redact_hides_passwords_only() -> None:
    assert redact("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert (
        redact("postgresql://u@h/db?password=x&sslmode=require") == "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert redact("postgresql://h/db") == "postgresql://h/db"


async def _run_in_thread(settings: Settings, url: str) -> int:
    """`migrate_command` runs its own event loop, as the CLI does: call it from a thread in these async tests."""
    import asyncio

    return await asyncio.to_thread(migrate_command, settings, url)
