"""`easel db migrate --to postgresql://...`: copy the SQLite database (rounds, ledger, policies, audit, notices,
...) and the image files of `EASEL_DATA_DIR` into an empty PostgreSQL database, then verify the copy (row
counts per table, ledger totals per user and day, every image by its SHA-256) and print a short report.

Exit status: 0 when the copy verified, 1 when it did not (or failed), 2 when refused before copying (no SQLite
database, not a PostgreSQL URL). The URL's password is never printed."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.settings import Settings

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_USERINFO = re.compile(r"^(?P<scheme>[a-z]+://)(?P<user>[^/@:?#]*):[^/@?#]*@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL with any password replaced by `***` (userinfo `user:password@` and a `password=` parameter)."""
    url = _USERINFO.sub(r"\g<scheme>\g<user>:***@", url)
    return _QUERY_PASSWORD.sub(r"\g<key>***", url)


def migrate_command(settings: Settings, target_url: str) -> int:
    shown = redact(target_url)
    if not target_url.startswith(POSTGRES_SCHEMES):
        print(f"easel: refused: the target must be a postgresql:// URL, not {shown}", file=sys.stderr)
        return 2
    source = settings.db_path
    if not source.is_file():
        print(
            f"easel: refused: there is no SQLite database at {source.resolve()} (check EASEL_DATA_DIR)",
            file=sys.stderr,
        )
        return 2

    from core.store.copy import copy_sqlite_to

    print(f"copying {source} and {settings.image_dir} into {shown}")
    try:
        report = asyncio.run(copy_sqlite_to(source, target_url, settings.image_dir))
    except Exception as error:  # the driver's own errors stay behind the store; report any failure plainly
        message = str(error).replace(target_url, shown)
        print(f"easel: copy failed, nothing committed to {shown}: {message}", file=sys.stderr)
        return 1
    for table, (have, got) in report.counts.items():
        print(f"  {table:<15} {have:>8} -> {got:<8} {'ok' if have == got else 'DIFFERS'}")
    print(f"  ledger totals   {report.ledger_users} (platform, community, user, day, kind) compared")
    files, verified = report.images
    print(f"  images          {files:>8} -> {verified:<8} {'ok' if files == verified else 'DIFFERS'}")
    if not report.ok:
        print(f"easel: the copy did NOT verify ({len(report.problems)} problems):", file=sys.stderr)
        for problem in report.problems[:20]:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("verified: row counts, ledger totals and images are equal. Set EASEL_DATABASE_URL to use PostgreSQL.")
    return 0


def add_migrate_parser(db_sub: Any) -> None:  # argparse's subparsers action has no public type
    """Register `easel db migrate --to URL` on the `db` subcommands."""
    migrate = db_sub.add_parser("migrate", help="copy the SQLite database and images into PostgreSQL, verified")
    migrate.add_argument("--to", required=True, metavar="URL", help="an empty database: postgresql://user@host/db")
    migrate.set_defaults(handler=_handler)


def _handler(settings: Settings, args: argparse.Namespace) -> int:
    return migrate_command(settings, args.to)
