"""Long rounds, measured on the real round service and SQLite store with the hand-written fake provider:

- restart cycles: a background round is started, the process "stops" (drain, as on SIGTERM) while the provider
  still works, a new core on the same data directory picks it up and delivers it. Each cycle checks one image,
  one charge, no "interrupted" notice, one provider job;
- cancel latency: from pressing Cancel on a running round to the refund message reaching the view.

Prints figures; asserts only correctness (charged once), never a time.
Run: `python -m tests.bench.bench_long_rounds [--restarts 20] [--cancels 200]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bots.process.app import open_core
from bots.process.config import Settings, load_settings
from core.events import Actor, ChannelKey, Platform, RoundRequest
from core.records import Round, RoundState, day_of
from tests.fakes.fake_provider import FakeProvider
from tests.fakes.recording_view import RecordingView

KEY = ChannelKey(Platform.TELEGRAM, "-1001", "-1001")
ALICE = Actor(Platform.TELEGRAM, "1", "Alice", username="alice")
MOD = Actor(Platform.TELEGRAM, "3", "Mo", username="mo", is_moderator=True)


def _settings(data: Path, worker: str) -> Settings:
    env = {
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
        "EASEL_DATA_DIR": str(data),
        "EASEL_WORKER_ID": worker,
        "EASEL_DAILY_CREDITS": "100000",
        "EASEL_USER_RATE": "10000",
        "EASEL_USER_CONCURRENCY": "100",
        "EASEL_PROVIDER_CONCURRENCY": "100",
    }
    return load_settings(env, dotenv=None)


async def _wait(check: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not (await check() if asyncio.iscoroutinefunction(check) else check()):
            await asyncio.sleep(0.001)


async def restart_cycles(count: int, data: Path) -> dict[str, Any]:
    """Each cycle: start a background round, stop mid-round, resume in a new core, deliver."""
    provider = FakeProvider(background=True)
    delivered = charged_twice = notices = 0
    for cycle in range(count):
        provider.gate = asyncio.Event()
        view = RecordingView()
        async with open_core(_settings(data, f"w{cycle}a"), provider=provider) as first:
            request = RoundRequest(KEY, ALICE, f"a patient fox {cycle}", f"bench:restart:{cycle}")
            task = asyncio.create_task(first.rounds.submit(request, view))

            async def accepted(core: Any = first, v: RecordingView = view) -> bool:
                found = await core.store.get_round(v.info.round_id) if v.info else None
                return found is not None and found.response_id is not None

            await _wait(accepted)
            await first.rounds.drain(grace=1)
            with contextlib.suppress(asyncio.CancelledError):  # shutdown cancels the request's task
                await asyncio.wait_for(task, 5)
        resumed = RecordingView()
        provider.gate.set()
        async with open_core(_settings(data, f"w{cycle}b"), provider=provider) as second:
            def view_for(item: Round, v: RecordingView = resumed) -> RecordingView:
                return v

            await second.rounds.resume(Platform.TELEGRAM, view_for)
            assert view.info is not None

            async def settled(core: Any = second, round_id: int = view.info.round_id) -> bool:
                found = await core.store.get_round(round_id)
                return found is not None and not found.state.is_open

            await _wait(settled)
            item = await second.store.get_round(view.info.round_id)
            assert item is not None and item.state is RoundState.DELIVERED, item
            delivered += resumed.result is not None and view.result is None
            pending = await second.store.pending_notices(Platform.TELEGRAM)
            notices += len(pending)
            for notice in pending:
                await second.store.notice_sent(notice.id, datetime.now(UTC))
            await second.rounds.drain(grace=1)
    async with open_core(_settings(data, "check"), provider=provider) as core:
        balance = await core.store.balance(KEY.platform, KEY.community, ALICE.user_id, day_of(datetime.now(UTC)),
                                           100000)
        charged_twice = balance.used - count  # one credit per square medium round
    jobs = len(provider.jobs)
    return {"restarts": count, "delivered_once": delivered, "extra_charges": charged_twice,
            "interrupted_notices": notices, "provider_jobs": jobs}


async def cancel_latency(count: int, data: Path) -> dict[str, Any]:
    """Press Cancel on a running round; time until the view shows the refund message."""
    provider = FakeProvider(background=True, gate=asyncio.Event())
    latencies: list[float] = []
    refunded = 0
    async with open_core(_settings(data, "cancel"), provider=provider) as core:
        for index in range(count):
            view = RecordingView()
            request = RoundRequest(KEY, ALICE, f"a fox {index}", f"bench:cancel:{index}")
            task = asyncio.create_task(core.rounds.submit(request, view))

            async def running(v: RecordingView = view) -> bool:
                found = await core.store.get_round(v.info.round_id) if v.info else None
                return found is not None and found.state is RoundState.RUNNING and found.response_id is not None

            await _wait(running)
            assert view.info is not None
            started = time.perf_counter()
            await core.rounds.press(f"cancel:{view.info.round_id}", KEY, ALICE, f"bench:press:{index}", RecordingView())
            await _wait(lambda v=view: v.refusal is not None)
            latencies.append((time.perf_counter() - started) * 1000)
            await task
            refunded += view.refusal is not None and view.refusal.reason == "cancelled"
        balance = await core.store.balance(KEY.platform, KEY.community, ALICE.user_id, day_of(datetime.now(UTC)),
                                           100000)
    latencies.sort()
    return {
        "cancels": count,
        "refunded": refunded,
        "credits_used_after": balance.used,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "max_ms": round(latencies[-1], 2),
    }


def machine() -> dict[str, Any]:
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), "")
    return {"nproc": os.cpu_count() or 0, "cpu_model": cpu, "python": platform.python_version()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--cancels", type=int, default=200)
    args = parser.parse_args(argv)

    async def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            return {
                "machine": machine(),
                "restart": await restart_cycles(args.restarts, Path(first)),
                "cancel": await cancel_latency(args.cancels, Path(second)),
            }

    report = asyncio.run(run())
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
