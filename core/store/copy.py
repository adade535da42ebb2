"""`easel db migrate --to postgresql://...`: copy a SQLite database into an empty PostgreSQL database and verify
the copy (row counts per table, and ledger totals per user, community, day and kind).

The source is first brought to the current schema (opening it runs its migrations), then read in one snapshot;
the target is migrated and filled in one transaction, so a failed copy leaves it empty. Ids are kept (round
numbers, parents, buttons that carry a round id keep working) and the identity sequences moved past them.
The safety salt is copied too, so users keep their provider safety identifiers.

Images are files in the data directory (`images/<sha[:2]>/<sha>.<ext>`); given that folder, `copy_sqlite_to`
also copies them into the PostgreSQL `images` table (`core.store.pg_images`), keeping each file's last use, and
verifies every one of them there by its SHA-256."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from core.errors import StoreError
from core.provider.pictures import EXTENSIONS
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore

# In dependency order (rounds before what references them). Workers are not copied: none is running.
TABLES = ("users", "rounds", "round_messages", "ledger", "policies", "audit", "notices", "communities", "inbox")
IDENTITY_TABLES = ("rounds", "ledger", "audit", "notices")
JSONB_COLUMNS = {("rounds", "input_shas")}
BATCH = 1000
LedgerKey = tuple[str, str, str, str, str]  # platform, community, user, day, kind


@dataclass
class CopyReport:
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (source rows, target rows)
    ledger_users: int = 0  # (platform, community, user, day, kind) totals compared
    images: tuple[int, int] = (0, 0)  # (image files found, of them verified in PostgreSQL)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def copy_sqlite_to(source: Path, target_url: str, image_dir: Path | None = None) -> CopyReport:
    """Copy the SQLite database at `source` into the (empty) PostgreSQL database at `target_url`, and the image
    files under `image_dir` when given."""
    if not await asyncio.to_thread(source.is_file):
        raise StoreError(f"no database at {source}")
    async with SqliteStore(source):  # brings an older database to the current schema
        pass
    async with PostgresStore(target_url):  # creates the schema
        pass
    rows = await asyncio.to_thread(_read_source, source)
    report = CopyReport()
    async with await psycopg.AsyncConnection.connect(target_url, row_factory=dict_row) as conn:
        async with conn.transaction():
            for table in TABLES:
                cursor = await conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table)))
                found = await cursor.fetchone()
                if found and found["n"]:
                    raise StoreError(f"the target database is not empty ({table} has {found['n']} rows)")
            for table in TABLES:
                await _insert(conn, table, rows[table])
            for table in IDENTITY_TABLES:
                await conn.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence(%s, 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {}"
                    ).format(sql.Identifier(table)),
                    (table,),
                )
            await conn.execute("UPDATE meta SET value = %s WHERE key = 'safety_salt'", (rows["salt"][0]["value"],))
        for table in TABLES:
            cursor = await conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table)))
            counted = await cursor.fetchone()
            report.counts[table] = (len(rows[table]), int(counted["n"]) if counted else -1)
        cursor = await conn.execute(
            "SELECT platform, community, user_id, day, kind, SUM(amount) AS total FROM ledger "
            "GROUP BY platform, community, user_id, day, kind"
        )
        target_totals = {
            (r["platform"], r["community"], r["user_id"], r["day"], r["kind"]): int(r["total"])
            for r in await cursor.fetchall()
        }
    report.problems += [
        f"{table}: {have} rows in SQLite, {got} in PostgreSQL"
        for table, (have, got) in report.counts.items()
        if have != got
    ]
    source_totals = _ledger_totals(rows["ledger"])
    report.ledger_users = len(source_totals)
    report.problems += [
        f"ledger total of {key} differs: {source_totals.get(key)} in SQLite, {target_totals.get(key)} in PostgreSQL"
        for key in sorted(set(source_totals) | set(target_totals))
        if source_totals.get(key) != target_totals.get(key)
    ]
    if image_dir is not None:
        await _copy_images(image_dir, target_url, report)
    return report


_MIME_OF = {f".{ext}": mime for mime, ext in EXTENSIONS.items()}


def _image_files(root: Path) -> list[tuple[Path, str, str]]:
    """(path, sha, mime) of every image file the cache holds (temp files left by a crash are not images)."""
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.glob("*/*")):
        if path.is_file() and path.suffix != ".tmp":
            found.append((path, path.stem, _MIME_OF.get(path.suffix, "application/octet-stream")))
    return found


async def _copy_images(root: Path, target_url: str, report: CopyReport) -> None:
    files = await asyncio.to_thread(_image_files, root)
    expected: set[tuple[str, str]] = set()
    async with await psycopg.AsyncConnection.connect(target_url) as conn:
        for path, sha, mime in files:
            data = await asyncio.to_thread(path.read_bytes)
            if hashlib.sha256(data).hexdigest() != sha:
                report.problems.append(f"image file {path.name} does not match its name (damaged): not copied")
                continue
            used_at = datetime.fromtimestamp((await asyncio.to_thread(path.stat)).st_mtime, UTC)
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO images (sha, mime, data, used_at) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (sha, mime) DO NOTHING",
                    (sha, mime, data, used_at),
                )
            expected.add((sha, mime))
        cursor = await conn.execute(
            "SELECT sha, mime FROM images WHERE encode(sha256(data), 'hex') = sha AND sha = ANY(%s)",
            ([sha for sha, _ in expected],),
        )
        verified = {(str(sha), str(mime)) for sha, mime in await cursor.fetchall()} & expected
    report.images = (len(files), len(verified))
    report.problems += [
        f"image {sha} ({mime}) is missing or altered in PostgreSQL" for sha, mime in sorted(expected - verified)
    ]


def _read_source(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every table to copy, read in one snapshot, read-only."""
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        conn.execute("BEGIN")
        found: dict[str, list[dict[str, Any]]] = {}
        for table in TABLES:
            order = "id" if table in IDENTITY_TABLES else "rowid"
            found[table] = [dict(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY {order}")]  # noqa: S608 - our names
        found["salt"] = [dict(r) for r in conn.execute("SELECT value FROM meta WHERE key = 'safety_salt'")]
        conn.execute("COMMIT")
    return found


async def _insert(conn: psycopg.AsyncConnection[Any], table: str, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    cursor = await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = %s AND is_generated = 'NEVER' AND identity_generation IS DISTINCT FROM 'ALWAYS'",
        (table,),
    )
    target_columns = {r["column_name"] for r in await cursor.fetchall()}
    columns = [name for name in rows[0] if name in target_columns]
    values = sql.SQL(", ").join(
        sql.SQL("%s::jsonb") if (table, name) in JSONB_COLUMNS else sql.Placeholder() for name in columns
    )
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)), values
    )
    async with conn.cursor() as cur:
        for start in range(0, len(rows), BATCH):
            await cur.executemany(query, [tuple(row[name] for name in columns) for row in rows[start : start + BATCH]])


def _ledger_totals(rows: Sequence[dict[str, Any]]) -> dict[LedgerKey, int]:
    totals: dict[LedgerKey, int] = {}
    for row in rows:
        key = (row["platform"], row["community"], row["user_id"], row["day"], row["kind"])
        totals[key] = totals.get(key, 0) + int(row["amount"])
    return totals
