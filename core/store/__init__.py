"""Storage: every line of SQL, migrations, and the backends behind the store port (`core.ports.Store`).

`open_store` picks the backend: SQLite in the data directory (the default), or PostgreSQL when
`EASEL_DATABASE_URL` is set. Use the result as `async with open_store(url, data_dir) as store:`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.store.postgres import PostgresStore
    from core.store.sqlite import SqliteStore

DATABASE_FILE = "easel.db"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(settings_database_url: str | None, data_dir: Path) -> SqliteStore | PostgresStore:
    """The store for these settings (not yet open: enter it with `async with`)."""
    if not settings_database_url:
        from core.store.sqlite import SqliteStore

        return SqliteStore(data_dir / DATABASE_FILE)
    if not settings_database_url.startswith(POSTGRES_SCHEMES):
        raise ConfigError("EASEL_DATABASE_URL must start with postgresql:// (or be unset for SQLite)")
    from core.store.postgres import PostgresStore

    return PostgresStore(settings_database_url)
