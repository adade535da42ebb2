"""The `easel` command: run, console, db backup, usage, forget, --version."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bots.process import backoff
from bots.process.config import Settings, check_tokens, load_settings
from core.errors import ConfigError, StoreError
from core.events import Platform, UserRef
from core.records import CommunityUsage, Forgotten

EX_CONFIG = 78
DISTRIBUTION = "easel-bot"  # the name in pyproject.toml


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


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
    parser.add_argument("--version", action="version", version=f"easel {version()}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="start every bot whose token is set")
    run.set_defaults(handler=_run)
    console = sub.add_parser("console", help="a terminal chat with the real core (no platform needed)")
    console.set_defaults(handler=_console)
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    backup = db_sub.add_parser("backup", help="write a consistent copy of the live database")
    backup.add_argument("path", type=Path, help="a file, or an existing directory for a dated easel-*.db file")
    backup.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    backup.set_defaults(handler=_backup)
    from bots.process.migrate import add_migrate_parser

    add_migrate_parser(db_sub)
    usage = sub.add_parser("usage", help="images, credits and estimated spend per community")
    usage.add_argument("--community", help="only this community (a Telegram chat id or Discord guild id)")
    usage.set_defaults(handler=_usage)
    forget = sub.add_parser("forget", help="erase a user's prompts and images (ledger totals are kept)")
    forget.add_argument("platform", choices=[p.value for p in Platform])
    forget.add_argument("user", help="the user's numeric id, or an @username Easel has seen")
    forget.set_defaults(handler=_forget)
    return parser


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bots.process.runner import check_runnable, run

    check_runnable(settings)  # what is missing comes before what is malformed
    check_tokens(settings)
    # A fatal exit (a rejected token) makes the next start wait; not when the operator changed the token.
    tokens = backoff.token_fingerprint(settings.telegram_token, settings.discord_token)
    if backoff.forget_if_changed(settings.data_dir, tokens):
        logging.getLogger("easel").info("the token changed since the last fatal exit: connecting without waiting")
    code = asyncio.run(run(settings))
    if code == EX_CONFIG:
        backoff.stamp(settings.data_dir, tokens)
    return code


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


def require_database(settings: Settings) -> None:
    """Commands that read or change existing data refuse to create an empty database by mistake (a typo in
    EASEL_DATA_DIR, the wrong working directory)."""
    if settings.database_url is None and not settings.db_path.is_file():
        raise StoreError(
            f"there is no database at {settings.db_path.resolve()}: check EASEL_DATA_DIR (and the directory you "
            "run easel from); Easel creates it on its first `easel run` or `easel console`"
        )


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    from bots.process.backup import backup_database

    if settings.database_url is not None:
        raise StoreError("easel db backup copies the SQLite database; for PostgreSQL use pg_dump")
    require_database(settings)
    written = backup_database(settings.db_path, args.path, force=args.force)
    print(f"backup written to {written} (integrity check ok)")
    return 0


def _usage(settings: Settings, args: argparse.Namespace) -> int:
    from core.store import open_store

    require_database(settings)

    async def report() -> list[CommunityUsage]:
        async with open_store(settings.database_url, settings.data_dir) as store:
            return await store.community_usage(datetime.now(UTC), args.community)

    print(usage_table(asyncio.run(report())))
    return 0


def usage_table(rows: Sequence[CommunityUsage]) -> str:
    """Every community (or one) for `easel usage`: a fixed-width table."""
    header = (
        f"{'platform':<9} {'community':<22} {'today img':>9} {'today cr':>8} {'month img':>9} "
        f"{'month cr':>8} {'month $':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.platform:<9} {row.community[:22]:<22} {row.today_images:>9} {row.today_credits:>8} "
            f"{row.month_images:>9} {row.month_credits:>8} {row.month_usd or 0:>9.2f}"
        )
    if not rows:
        lines.append("(no rounds this month)")
    return "\n".join(lines)


def parse_user(text: str) -> UserRef:
    """A numeric id (ASCII digits) or an @username."""
    if re.fullmatch(r"[0-9]+", text):
        return UserRef(user_id=text)
    if re.fullmatch(r"@[A-Za-z0-9_.]{1,64}", text):
        return UserRef(username=text[1:])
    raise ConfigError(f"{text!r} is neither a numeric user id nor an @username")


def _forget(settings: Settings, args: argparse.Namespace) -> int:
    from core.provider.cache import ImageCache
    from core.store import open_store

    platform, ref = Platform(args.platform), parse_user(args.user)
    require_database(settings)
    cache = ImageCache(settings.image_dir, max_age_days=settings.image_cache_days, max_bytes=0)

    async def erase() -> tuple[str, Forgotten]:
        async with open_store(settings.database_url, settings.data_dir) as store:
            user_id = ref.user_id
            if user_id is None:
                found = await store.find_user(platform, ref)
                if found is None:
                    raise StoreError(f"Easel has not seen {args.user} on {platform.value}; give their numeric id")
                user_id = found[0]
            forgotten = await store.forget_user(platform, user_id)
            await store.checkpoint()  # the erased text leaves the write-ahead log too
        for sha, mime in forgotten.images:
            cache.delete(sha, mime)
        return user_id, forgotten

    user_id, forgotten = asyncio.run(erase())
    who = f"{platform.value}:{user_id}" + (f" ({args.user})" if ref.username else "")
    print(f"erased the prompts and images of {forgotten.rounds} rounds by {who}; ledger totals kept")
    if forgotten.response_ids:
        print(_delete_at_provider(settings, forgotten.response_ids))
    return 0


def _delete_at_provider(settings: Settings, response_ids: Sequence[str]) -> str:
    """Delete the forgotten rounds' stored responses at the provider (they hold the prompt and the image). Best
    effort: the local data is already erased; what could not be deleted is named so the operator can retry."""
    total = len(response_ids)
    if not settings.openai_api_key:
        return (f"the provider still stores {total} of their responses (until they expire): OPENAI_API_KEY is not "
                f"set, so they were not deleted: {' '.join(response_ids)}")
    from core.errors import ProviderError
    from core.provider.factory import build_provider

    async def delete() -> tuple[int, int, list[str], list[str]]:
        provider = build_provider(settings)
        deleted = gone = 0
        failed: list[str] = []
        reasons: list[str] = []
        try:
            for response_id in response_ids:
                try:
                    if await provider.delete(response_id):
                        deleted += 1
                    else:
                        gone += 1
                except ProviderError as error:
                    failed.append(response_id)
                    if error.reason not in reasons:
                        reasons.append(error.reason)
        finally:
            await provider.aclose()
        return deleted, gone, failed, reasons

    deleted, gone, failed, reasons = asyncio.run(delete())
    line = f"deleted {deleted} of {total} stored responses at the provider"
    if gone:
        line += f"; {gone} it no longer held"
    if failed:
        line += (f"; {len(failed)} could not be deleted ({', '.join(reasons)}; see the log), delete them at the "
                 f"provider or they expire there: {' '.join(failed)}")
    return line


if __name__ == "__main__":
    sys.exit(main())
