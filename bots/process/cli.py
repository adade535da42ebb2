"""The `easel` command: run, console, db backup, usage, forget."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bots.process.config import Settings, load_settings
from core.errors import ConfigError, StoreError

EX_CONFIG = 78


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        settings = load_settings()
        from bots.process.logs import setup_logging

        setup_logging(settings, settings.secrets())
        code: int = args.handler(settings, args)
        return code
    except ConfigError as error:
        print(f"easel: configuration error: {error}", file=sys.stderr)
        return EX_CONFIG
    except StoreError as error:
        print(f"easel: database error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="easel", description="Image generation and edit rounds for chat.")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="start every bot whose token is set")
    run.set_defaults(handler=_run)
    console = sub.add_parser("console", help="a terminal chat with the real core (no platform needed)")
    console.set_defaults(handler=_console)
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    backup = db_sub.add_parser("backup", help="write a consistent copy of the live database")
    backup.add_argument("path", type=Path)
    backup.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    backup.set_defaults(handler=_backup)
    usage = sub.add_parser("usage", help="images, credits and estimated spend per community")
    usage.add_argument("--community", help="only this community (a Telegram chat id or Discord guild id)")
    usage.set_defaults(handler=_usage)
    forget = sub.add_parser("forget", help="erase a user's prompts and images (ledger totals are kept)")
    forget.add_argument("platform", choices=["telegram", "discord", "console"])
    forget.add_argument("user_id")
    forget.set_defaults(handler=_forget)
    return parser


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bots.process.runner import run

    return asyncio.run(run(settings))


def _console(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.openai_api_key:
        raise ConfigError("easel console needs OPENAI_API_KEY (the key for the image provider)")
    from bots.console import Console, stdin_lines
    from bots.process.app import open_core

    async def session() -> None:
        async with open_core(settings) as core:
            await Console(core.services, settings.data_dir / "console").run(stdin_lines())

    asyncio.run(session())
    return 0


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from bots.process.backup import backup_database

    if not settings.db_path.exists():
        raise StoreError(f"there is no database at {settings.db_path} (EASEL_DATA_DIR)")
    backup_database(settings.db_path, args.path, force=args.force)
    print(f"backup written to {args.path} (integrity check ok)")
    return 0


def _require_database(settings: Settings) -> None:
    if not settings.db_path.exists():
        raise StoreError(f"there is no database at {settings.db_path} (EASEL_DATA_DIR); nothing to do")


def _usage(settings: Settings, args: argparse.Namespace) -> int:
    from bots.process.reports import operator_table
    from core.store.sqlite import SqliteStore

    _require_database(settings)

    async def report() -> str:
        async with SqliteStore(settings.db_path) as store:
            rows = await store.community_usage(datetime.now(UTC), args.community)
        return operator_table(rows)

    print(asyncio.run(report()))
    return 0


def _forget(settings: Settings, args: argparse.Namespace) -> int:
    from core.events import Platform, UserRef
    from core.provider.cache import ImageCache
    from core.store.sqlite import SqliteStore

    _require_database(settings)
    cache = ImageCache(settings.image_dir, max_age_days=settings.image_cache_days, max_bytes=0)
    platform = Platform(args.platform)

    async def erase() -> int:
        async with SqliteStore(settings.db_path) as store:
            who = args.user_id
            ref = UserRef(username=who.lstrip("@")) if who.startswith("@") else UserRef(user_id=who)
            found = await store.find_user(platform, ref)
            if found is None and ref.user_id is None:
                raise StoreError(f"Easel has not seen {who} on {platform.value}; use the numeric user id")
            user_id = found[0] if found is not None else who
            forgotten = await store.forget_user(platform, user_id)
            await store.checkpoint()
        for sha, mime in forgotten.images:
            cache.delete(sha, mime)
        return forgotten.rounds

    count = asyncio.run(erase())
    print(f"erased the prompts and images of {count} rounds by {args.platform}:{args.user_id}; ledger totals kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
