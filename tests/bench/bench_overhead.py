"""Benchmark 1, overhead: the time Easel adds around a provider that answers at once.

Through the real adapter, the real core (SQLite on disk, production logging into a file) and the in-process fake
platform, per round:

- update -> provider call: `in` (update pushed to the fake / INTERACTION_CREATE dispatched) to the provider
  being called;
- provider answer -> upload: the provider returning to the fake receiving sendPhoto / PATCH @original.

Each is split where the adapter hands the round to the core (`RoundService.submit`) and where the core hands the
result back (`RoundView.deliver`): "to core" is the platform, the client library and the adapter's parsing;
"in core" is Easel's core (dedupe, ledger, queue, image store: SQLite commits and file writes); "to upload"
is the adapter rendering the result and the library sending it.

The provider is the hand-written `BenchProvider` (no HTTP, no sleep), answering with a 64x64 PNG (`--big`: a
~1.6 MB 1024x1024 PNG, a fresh copy per round). The provider cap is 128, above every level, so no round waits
in the queue (queueing is benchmark 2's subject). Two load shapes per level of concurrency K:

- `saturated`: K users each send their next `/imagine` as soon as the core has finished the previous one: K
  rounds flow through Easel at every moment and the process never idles (a stress test: with all of them
  on one event loop, latency grows with K times the CPU one round costs).
- `in-flight`: K-1 rounds are parked at the provider (as in production, where a generation takes 10-60 s),
  and one user sends rounds one after another through a process that carries K rounds.

Each user's first round is a warm-up (it also records the user's name) and is left out.

    python -m tests.bench.bench_overhead [--platform telegram|discord] [--levels 1,10,100] [--big]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

from tests.bench._harness import (
    PLATFORMS,
    BenchProvider,
    Rig,
    Row,
    Timeline,
    big_png,
    closed_loop,
    fmt_ms,
    loadavg,
    open_rig,
    report,
    rows_to_dicts,
    small_png,
    summary,
)

NAME = "overhead"
TARGET_P99_MS = 25.0  # at 100 concurrent rounds
TARGET_MEDIAN_MS = 5.0  # "a few milliseconds"
SATURATED, IN_FLIGHT = "saturated", "in-flight"
# Each interval split at the adapter/core seam: (figure, label) for each part.
SPLITS = {
    "update_to_provider_ms": (("update_to_submit_ms", "to core"), ("submit_to_provider_ms", "in core")),
    "answer_to_upload_ms": (("answer_to_deliver_ms", "in core"), ("deliver_to_upload_ms", "to upload")),
}
# Rounds measured per level (after one warm-up round per user).
DEFAULT_ROUNDS = {1: 200, 10: 400, 100: 600}
IN_FLIGHT_ROUNDS = 200


async def _measure(rig: Rig, workers: int, per_worker: int, *, first_user: int, timeout: float,
                   settle: bool = True) -> dict[str, Any]:
    timeline = rig.timeline
    started, cpu = time.perf_counter(), time.process_time()
    tags = await closed_loop(rig, workers, per_worker, warmup=1, timeout=timeout, first_user=first_user,
                             settle=settle)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    rounds_run = workers * (per_worker + 1)
    return {
        "rounds": len(tags),
        "elapsed_s": elapsed,
        "rounds_per_s": rounds_run / elapsed if elapsed else 0.0,
        # CPU of the whole process (Easel, the client library and the fake) per round, warm-ups included:
        # far less sensitive than wall time to other processes on the machine.
        "cpu_ms_per_round": cpu * 1000 / rounds_run,
        "update_to_provider_ms": summary(timeline.spans("in", "call", tags)),
        "answer_to_upload_ms": summary(timeline.spans("answer", "upload", tags)),
        "update_to_upload_ms": summary(timeline.spans("in", "upload", tags)),
        # The split between the adapter with its library (and the fake) and the core:
        "update_to_submit_ms": summary(timeline.spans("in", "submit", tags)),  # platform, library, adapter
        "submit_to_provider_ms": summary(timeline.spans("submit", "call", tags)),  # core
        "answer_to_deliver_ms": summary(timeline.spans("answer", "deliver", tags)),  # core
        "deliver_to_upload_ms": summary(timeline.spans("deliver", "upload", tags)),  # adapter, library, platform
        "uploads": timeline.count("upload", tags),
    }


async def _in_flight(rig: Rig, level: int, rounds: int, timeout: float) -> dict[str, Any]:
    """K-1 rounds parked at the provider (users 1..K-1), user 0 sends `rounds` rounds one by one."""
    provider = rig.provider
    background = [rig.new_tag() for _ in range(level - 1)]
    provider.park(set(background))
    for user, tag in enumerate(background, start=1):
        await rig.submit_as(user, tag)
    for tag in background:
        await rig.timeline.wait(tag, "call", timeout)
    figures = await _measure(rig, 1, rounds, first_user=0, timeout=timeout, settle=False)
    figures["parked"] = len(background)
    provider.unpark()
    for tag in background:
        await rig.timeline.wait(tag, "upload", timeout)
    await rig.settle()
    provider.park(set())
    return figures


async def run_platform(platform: str, levels: Sequence[int], rounds: dict[int, int], *, big: bool = False,
                       in_flight_rounds: int = IN_FLIGHT_ROUNDS, timeout: float = 60.0) -> dict[str, Any]:
    timeline = Timeline()
    image = big_png() if big else small_png()
    provider = BenchProvider(timeline, image=image, fresh=big)
    result: dict[str, Any] = {"platform": platform, "image_bytes": len(image), "levels": {}}
    async with open_rig(platform, users=max(levels), provider=provider, EASEL_PROVIDER_CONCURRENCY=128) as rig:
        for level in levels:
            per_worker = max(1, rounds.get(level, 100) // level)
            figures = {SATURATED: await _measure(rig, level, per_worker, first_user=0, timeout=timeout)}
            if level > 1:
                figures[IN_FLIGHT] = await _in_flight(rig, level, in_flight_rounds, timeout)
            result["levels"][str(level)] = figures
        result["outcomes"] = await rig.outcomes()
        result["provider_calls"] = provider.calls
        result["faults"] = rig.faults()
        result["aborted_requests"] = rig.aborted_requests()
    return result


def rows(results: Sequence[dict[str, Any]]) -> list[Row]:
    out: list[Row] = []
    for res in results:
        size = "1024² PNG" if res["image_bytes"] > 100_000 else "64² PNG"
        if res.get("aborted_requests"):
            out.append(Row(f"overhead, {res['platform']}", "requests the adapter aborted mid-way",
                           f"{res['aborted_requests']} in {res['provider_calls']} rounds"))
        for level, modes in res["levels"].items():
            for mode, figures in modes.items():
                label = f"overhead, {res['platform']}, {level} concurrent ({mode}), {size}"
                for key, name in (("update_to_provider_ms", "update→provider"),
                                  ("answer_to_upload_ms", "answer→upload")):
                    s = figures[key]
                    target, met = "", None
                    if level == "100":
                        target = f"median ≤ {TARGET_MEDIAN_MS:g} ms, p99 < {TARGET_P99_MS:g} ms"
                        met = s["median"] <= TARGET_MEDIAN_MS and s["p99"] < TARGET_P99_MS
                    first, second = SPLITS[key]
                    a, b = figures[first[0]], figures[second[0]]
                    out.append(Row(label, name, f"median {fmt_ms(s['median'])}, p99 {fmt_ms(s['p99'])} "
                                                f"(n={s['n']}; medians: {first[1]} {fmt_ms(a['median'])}, "
                                                f"{second[1]} {fmt_ms(b['median'])})", target, met))
                out.append(Row(label, "throughput, CPU",
                               f"{figures['rounds_per_s']:.0f} rounds/s, {figures['cpu_ms_per_round']:.1f} ms "
                               "CPU/round (whole process)"))
    return out


async def run(platforms: Sequence[str] = PLATFORMS, levels: Sequence[int] = (1, 10, 100),
              rounds: dict[int, int] | None = None, big: bool = False,
              in_flight_rounds: int = IN_FLIGHT_ROUNDS) -> dict[str, Any]:
    load = loadavg()
    rounds = rounds or DEFAULT_ROUNDS
    results = [await run_platform(p, levels, rounds, big=big, in_flight_rounds=in_flight_rounds)
               for p in platforms]
    return {"loadavg_1m_at_start": load,
            "params": {"platforms": list(platforms), "levels": list(levels), "rounds": rounds, "big": big,
                       "in_flight_rounds": in_flight_rounds,
                       "provider": "BenchProvider (hand-written, answers at once)", "provider_concurrency": 128},
            "results": results, "rows": rows_to_dicts(rows(results))}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", choices=PLATFORMS, action="append")
    parser.add_argument("--levels", default="1,10,100")
    parser.add_argument("--big", action="store_true", help="answer with a ~1.6 MB 1024x1024 PNG")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    data = asyncio.run(run(args.platform or PLATFORMS, levels, big=args.big))
    report(data, NAME + ("-big" if args.big else ""))
    return data


if __name__ == "__main__":
    main()
