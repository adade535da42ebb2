"""A process to kill: opens the real core (bots.process.app.open_core) on a data dir, delivers a few rounds, then starts
many more that stay in flight (reserved and queued, reserved and at the provider, generated and stuck in
delivery), prints `READY <reserve rows>` once every one of their reserves is committed, and waits to be
killed. With `--stream` it then keeps starting rounds (some answered, some hanging, some over quota) so that
the kill lands in the middle of writes. Used by tests/core/test_ledger_crash.py:

    python -m tests.core._crash_worker DATA_DIR --tag a --delivered 5 --inflight 30 --generated 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sqlite3
from typing import NoReturn

from bots.process.app import open_core
from bots.process.config import Settings, load_settings
from core.events import (
    Actor,
    ChannelKey,
    DeskCommand,
    Platform,
    Quality,
    RoundRequest,
    Shape,
    SpecOptions,
    UserRef,
    Verb,
)
from core.outcomes import Preview, Refusal, RoundInfo, RoundResult, Stage
from core.ports import GeneratedImage, ImageJob, ProviderEvents
from tests.fakes.fake_provider import png

KEY = ChannelKey(Platform.CONSOLE, "crash", "crash-ch")
USERS = [Actor(Platform.CONSOLE, str(i), f"User {i}") for i in (1, 2, 3)]
POOR = Actor(Platform.CONSOLE, "4", "Poor")  # over quota after a few rounds (daily credits set below)
SHAPES = [(Shape.SQUARE, Quality.MEDIUM), (Shape.LANDSCAPE, Quality.HIGH), (Shape.PORTRAIT, Quality.MEDIUM)]


def settings_for(data_dir: str, provider_concurrency: int = 8) -> Settings:
    """The worker's settings; the test reopens the core with the same ones."""
    return load_settings(
        {
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "EASEL_DATA_DIR": data_dir,
            "EASEL_DAILY_CREDITS": "100000",
            "EASEL_PROVIDER_CONCURRENCY": str(provider_concurrency),
            "EASEL_USER_CONCURRENCY": "100",
            "EASEL_USER_RATE": "10000",
            "EASEL_QUEUE_LIMIT": "100000",
        },
        dotenv=None,
    )


async def hang() -> NoReturn:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class Provider:
    """Answers `instant` calls at once, and any prompt containing "quick"; every other call never returns."""

    def __init__(self, instant: int) -> None:
        self.instant = instant
        self.calls = 0

    background = False

    async def resume(self, response_id: str, after_seq: int | None, events: ProviderEvents) -> GeneratedImage:
        raise AssertionError("no background responses here")

    async def cancel(self, response_id: str) -> None:
        return None

    async def delete(self, response_id: str) -> bool:
        return False

    async def create(self, job: ImageJob, events: ProviderEvents) -> GeneratedImage:
        self.calls += 1
        if self.instant > 0 or "quick" in job.prompt:
            self.instant = max(0, self.instant - 1)
            return GeneratedImage(image=png(8, 8), response_id=f"resp_{self.calls}")
        return await hang()

    async def aclose(self) -> None:
        return None


class View:
    """`progress` is set at the first sign of life after the reserve committed (queued, started), or on a
    refusal. With `stall`, delivery never returns: the round stays `delivering`."""

    def __init__(self, stall: bool = False) -> None:
        self.progress = asyncio.Event()
        self.stalled = asyncio.Event()  # set when delivery started and will never end
        self.stall = stall

    async def begin(self, info: RoundInfo) -> None:
        return None  # before the reserve: not yet a sign of life

    async def stage(self, stage: Stage) -> None:
        return None

    def progress_message(self) -> str | None:
        return None

    async def queued(self, position: int) -> None:
        self.progress.set()

    async def started(self) -> None:
        self.progress.set()

    async def partial(self, preview: Preview) -> None:
        return None

    async def deliver(self, result: RoundResult) -> list[str]:
        self.progress.set()
        if self.stall:
            self.stalled.set()
            await hang()
        return [f"msg-{result.round_id}"]

    async def refuse(self, refusal: Refusal) -> None:
        self.progress.set()


def request(tag: str, i: int, prompt: str, actor: Actor | None = None) -> RoundRequest:
    size, quality = SHAPES[i % len(SHAPES)]
    return RoundRequest(
        key=KEY,
        actor=actor or USERS[i % len(USERS)],
        prompt=f"{prompt} {tag}-{i}",
        idempotency_key=f"crash:{tag}:{i}",
        options=SpecOptions(shape=size, quality=quality),
    )


async def main(args: argparse.Namespace) -> None:
    provider = Provider(instant=args.delivered + args.generated)
    concurrency = 1000 if args.stream else 8
    async with open_core(settings_for(args.data_dir, concurrency), provider=provider) as core:
        rounds = core.rounds
        moderator = Actor(Platform.CONSOLE, "900", "Mod", is_moderator=True)
        await core.desk.seen(POOR, KEY.community)
        poor = DeskCommand(Verb.SET, KEY, moderator, f"crash:{args.tag}:poor", target=UserRef(user_id=POOR.user_id),
                           amount=3)
        await core.desk.run(poor)
        for i in range(args.delivered):
            await rounds.submit(request(args.tag, i, "done"), View())
        tasks, views = [], []
        for i in range(args.delivered, args.delivered + args.inflight):
            view = View(stall=True)
            views.append(view)
            tasks.append(asyncio.create_task(rounds.submit(request(args.tag, i, "in flight"), view)))
        for view in views:
            await view.progress.wait()
        # The instant answers go on to delivery, where they stall: wait for all of them to get there.
        stalled = [asyncio.create_task(view.stalled.wait()) for view in views]
        while sum(task.done() for task in stalled) < args.generated:
            await asyncio.wait([t for t in stalled if not t.done()], return_when=asyncio.FIRST_COMPLETED)
        path = core.settings.db_path  # a read-only look at the file, as the test's post-mortem does
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            reserves = conn.execute("SELECT COUNT(*) FROM ledger WHERE kind = 'reserve'").fetchone()[0]
        print(f"READY {reserves}", flush=True)
        if args.stream:
            for i in itertools.count(args.delivered + args.inflight):
                prompt = "quick" if i % 2 else "slow"
                view = View()
                actor = POOR if i % 5 == 0 else None
                tasks.append(asyncio.create_task(rounds.submit(request(args.tag, i, prompt, actor), view)))
                await view.progress.wait()
                print(f"+{i}", flush=True)
        await hang()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--tag", required=True, help="makes this run's idempotency keys unique")
    parser.add_argument("--delivered", type=int, default=5)
    parser.add_argument("--inflight", type=int, default=30)
    parser.add_argument("--generated", type=int, default=4, help="in-flight rounds left stuck in delivery")
    parser.add_argument("--stream", action="store_true", help="after READY, keep starting rounds until killed")
    asyncio.run(main(parser.parse_args()))
