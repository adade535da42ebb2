"""Benchmarks 2 and 4, throughput, fairness and acknowledgement under load.

1,000 rounds from 200 users through the real adapter and core: the provider (hand-written `BenchProvider`)
takes 0.5 s per image, the global cap is 32 (EASEL_PROVIDER_CONCURRENCY=32), credits are plentiful. Each user
sends 5 rounds, the next as soon as the core has finished the previous one: all 200 start at once, so 32 run
and up to 168 wait in the queue (EASEL_QUEUE_LIMIT=200, the default), and no user ever has more than one round
of its own in flight, which keeps clear of EASEL_USER_CONCURRENCY=2 (the default) without raising it.

Figures: total time against the ideal 1000 / 32 x 0.5 s = 15.6 s (target within 1.25x); the provider's peak
concurrency (never above 32); fairness: the longest queue wait against the median wait, and the slowest
user's time for their 5 rounds against the median user's. On Discord, also benchmark 4: the time from
INTERACTION_CREATE dispatched to the fake receiving the interaction callback (target: all within 3 s).

    python -m tests.bench.bench_throughput [--platform discord|telegram] [--users 200] [--rounds 5]
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
    Row,
    Timeline,
    closed_loop,
    fmt_ms,
    loadavg,
    open_rig,
    report,
    rows_to_dicts,
    summary,
)

NAME = "throughput"
TARGET_RATIO = 1.25
ACK_LIMIT_S = 3.0
STARVED_RATIO = 2.0  # a user whose wait is over twice the median's would be starved (our reading of "no user starved")


async def run_platform(platform: str, *, users: int = 200, rounds: int = 5, cap: int = 32, latency: float = 0.5,
                       queue_limit: int = 200, timeout: float = 120.0) -> dict[str, Any]:
    timeline = Timeline()
    provider = BenchProvider(timeline, delay=latency)
    async with open_rig(platform, users=users, provider=provider, EASEL_PROVIDER_CONCURRENCY=cap,
                        EASEL_USER_CONCURRENCY=2, EASEL_QUEUE_LIMIT=queue_limit) as rig:
        started, cpu = time.perf_counter(), time.process_time()
        per_user: dict[int, list[int]] = {}
        tags: list[int] = []

        async def user(index: int) -> None:
            mine = await closed_loop(rig, 1, rounds, first_user=index, timeout=timeout, settle=False)
            per_user[index] = mine
            tags.extend(mine)

        await asyncio.gather(*(user(i) for i in range(users)))
        await rig.settle(timeout)
        cpu = time.process_time() - cpu
        marks = timeline.marks
        first_in = min(marks[t]["in"] for t in tags)
        last_upload = max(marks[t]["upload"] for t in tags)
        total = last_upload - first_in
        ideal = len(tags) / cap * latency
        waits = timeline.spans("in", "call", tags)
        user_times = [(max(marks[t]["upload"] for t in mine) - min(marks[t]["in"] for t in mine))
                      for mine in per_user.values()]
        wait_s = summary(waits)
        user_s = summary(user_times)
        result: dict[str, Any] = {
            "platform": platform,
            "users": users, "rounds_per_user": rounds, "cap": cap, "provider_latency_s": latency,
            "rounds": len(tags),
            "delivered_uploads": timeline.count("upload", tags),
            "total_s": total,
            "ideal_s": ideal,
            "ratio": total / ideal,
            "wall_s_until_settled": time.perf_counter() - started,
            "cpu_s": cpu,
            "provider_calls": provider.calls,
            "provider_peak": provider.peak,
            "queue_wait_ms": wait_s,
            "longest_wait_over_median": wait_s["max"] / wait_s["median"] if wait_s["median"] else None,
            "user_total_s": user_s,
            "slowest_user_over_median": user_s["max"] / user_s["median"] if user_s["median"] else None,
            "update_to_upload_ms": summary(timeline.spans("in", "upload", tags)),
            "outcomes": await rig.outcomes(),
            "faults": rig.faults(),
            "aborted_requests": rig.aborted_requests(),
        }
        if platform == "discord":
            acks = timeline.spans("in", "ack", tags)
            result["ack_ms"] = summary(acks)
            result["acks"] = len(acks)
    return result


def rows(results: Sequence[dict[str, Any]]) -> list[Row]:
    out: list[Row] = []
    for r in results:
        label = f"throughput, {r['platform']}"
        out.append(Row(label, f"total time, {r['rounds']} rounds / {r['users']} users",
                       f"{r['total_s']:.2f} s = {r['ratio']:.3f}× ideal {r['ideal_s']:.2f} s",
                       f"≤ {TARGET_RATIO}× ideal", r["ratio"] <= TARGET_RATIO))
        out.append(Row(label, "provider peak concurrency", str(r["provider_peak"]), f"≤ {r['cap']}",
                       r["provider_peak"] <= r["cap"]))
        w = r["queue_wait_ms"]
        ratio = r["longest_wait_over_median"]
        out.append(Row(label, "queue wait (update→provider)",
                       f"median {fmt_ms(w['median'])}, p99 {fmt_ms(w['p99'])}, max {fmt_ms(w['max'])} "
                       f"(max/median {ratio:.2f})", f"max/median < {STARVED_RATIO:g}", ratio < STARVED_RATIO))
        u = r["user_total_s"]
        uratio = r["slowest_user_over_median"]
        out.append(Row(label, f"per-user time for {r['rounds_per_user']} rounds",
                       f"median {u['median']:.2f} s, max {u['max']:.2f} s (max/median {uratio:.2f})",
                       f"max/median < {STARVED_RATIO:g}", uratio < STARVED_RATIO))
        out.append(Row(label, "rounds delivered", f"{r['outcomes'].get('delivered', 0)} / {r['rounds']}",
                       "all", r["outcomes"].get("delivered", 0) == r["rounds"]))
        if r.get("aborted_requests"):
            out.append(Row(label, "requests the adapter aborted mid-way", f"{r['aborted_requests']}"))
        if "ack_ms" in r:
            a = r["ack_ms"]
            out.append(Row("acknowledgement, discord, load above", "dispatch→callback",
                           f"median {fmt_ms(a['median'])}, p99 {fmt_ms(a['p99'])}, max {fmt_ms(a['max'])} "
                           f"(n={a['n']})", f"max < {ACK_LIMIT_S:g} s",
                           a["max"] < ACK_LIMIT_S * 1000 and r["acks"] == r["rounds"]))
    return out


async def run(platforms: Sequence[str] = ("discord",), *, users: int = 200, rounds: int = 5, cap: int = 32,
              latency: float = 0.5) -> dict[str, Any]:
    load = loadavg()
    results = [await run_platform(p, users=users, rounds=rounds, cap=cap, latency=latency) for p in platforms]
    return {"loadavg_1m_at_start": load,
            "params": {"platforms": list(platforms), "users": users, "rounds_per_user": rounds, "cap": cap,
                       "provider_latency_s": latency, "provider": "BenchProvider (hand-written, sleeps)"},
            "results": results, "rows": rows_to_dicts(rows(results))}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", choices=PLATFORMS, action="append",
                        help="default: discord (the acknowledgement figure needs it)")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per user")
    args = parser.parse_args(argv)
    platforms = args.platform or ["discord"]
    data = asyncio.run(run(platforms, users=args.users, rounds=args.rounds))
    report(data, NAME if platforms == ["discord"] else "-".join([NAME, *platforms]))
    return data


if __name__ == "__main__":
    main()
