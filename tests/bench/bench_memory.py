"""Benchmark 3, memory: 64 rounds in flight at once, each with a real 1024x1024 PNG (~1.6 MB).

Through the real adapter and core: the provider (`BenchProvider`) parks calls until all 64 are in flight, then
answers each with a fresh copy of the PNG (as the real provider decodes a new one per answer); the fake then
parks the 64 result uploads (before reading their bodies) until all have arrived. At that moment every round
holds its image at once and its upload has started: the peak Easel is responsible for.

Figures (RSS from /proc/self/status; the fakes run in this process, so they keep no uploaded bytes):
- RSS delta per in-flight round = (RSS with 64 uploads parked - RSS before the burst) / 64, against the image
  size: about 1x means each image is held once; 2x or more would mean copies per stage.
- The same at the provider gate (rounds in flight, no image yet): the cost of a round without its image.
- With `--tracemalloc` (a second pass): Python's own count of live bytes at the peak and where the large blocks
  (>= 256 KiB) were allocated, so a copy would show up by name.

    python -m tests.bench.bench_memory [--platform telegram|discord] [--rounds 64] [--no-tracemalloc]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import subprocess
import sys
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from tests.bench._harness import (
    PLATFORMS,
    BenchProvider,
    Row,
    Timeline,
    UploadHold,
    big_png,
    loadavg,
    open_rig,
    report,
    rows_to_dicts,
)

NAME = "memory"
_ROOT = str(Path(__file__).resolve().parents[2]) + "/"  # sites are shown relative to the checkout
MIB = 1024 * 1024
TARGET_RATIO = 1.5  # RSS per in-flight round / image size: "held once" leaves room for bookkeeping only
BIG_BLOCK = 256 * 1024
FAKE_SIDE = re.compile(r"aiohttp/web_[a-z_]+\.py$|tests/fakes/")


def _status(field: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    with suppress(OSError), open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
        return True
    return False


def _in_fake(trace: tracemalloc.Trace) -> bool:
    """Allocated by the fake server's side (aiohttp's server buffering a parked upload, or the fake itself)."""
    return any(FAKE_SIDE.search(frame.filename) for frame in trace.traceback)


def _big_blocks(snapshot: tracemalloc.Snapshot, image_bytes: int) -> list[dict[str, Any]]:
    """Live allocations of at least BIG_BLOCK bytes, grouped by the innermost frame outside the stdlib."""
    sites: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for trace in snapshot.traces:
        if trace.size < BIG_BLOCK:
            continue
        if _in_fake(trace):
            where = "fake server (aiohttp web_*, tests/fakes)"
            sites[where] += 1
            sizes[where] += trace.size
            continue
        frames = [f for f in trace.traceback if "/lib/python3" not in f.filename or "site-packages" in f.filename]
        frame = (frames or list(trace.traceback))[-1]
        where = f"{frame.filename.removeprefix(_ROOT)}:{frame.lineno}"
        sites[where] += 1
        sizes[where] += trace.size
    return [{"site": site, "blocks": count, "mib": sizes[site] / MIB,
             "per_image": sizes[site] / image_bytes}
            for site, count in sites.most_common(8)]


async def run_platform(platform: str, rounds: int = 64, *, trace: bool = False,
                       timeout: float = 60.0) -> dict[str, Any]:
    timeline = Timeline()
    image = big_png()
    provider = BenchProvider(timeline, image=image, fresh=True)
    result: dict[str, Any] = {"platform": platform, "rounds": rounds, "image_bytes": len(image),
                              "tracemalloc": trace}
    async with open_rig(platform, users=rounds, provider=provider, keep_uploads=False,
                        EASEL_PROVIDER_CONCURRENCY=rounds) as rig:
        # Warm-up: two full rounds load lazy imports and fill pools and caches.
        for user in range(2):
            tag = await rig.submit(user)
            await timeline.wait(tag, "upload", timeout)
        await rig.settle()
        gc.collect()
        if trace:
            tracemalloc.start(25)
        base_rss = _status("VmRSS")
        result["hwm_reset"] = _reset_peak()
        all_in = provider.hold(rounds)
        hold = UploadHold(rounds)
        rig.fake.upload_hold = hold
        tags = [await rig.submit(user) for user in range(rounds)]
        await asyncio.wait_for(all_in.wait(), timeout)
        gate_rss = _status("VmRSS")
        provider.release()
        await asyncio.wait_for(hold.all_parked.wait(), timeout)
        peak_rss, peak_hwm = _status("VmRSS"), _status("VmHWM")
        if trace:
            current, peak = tracemalloc.get_traced_memory()
            snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
            result["traced_live_mib"] = current / MIB
            result["traced_peak_mib"] = peak / MIB
            easel = sum(t.size for t in snapshot.traces if not _in_fake(t))
            result["traced_live_per_round_over_image"] = current / rounds / len(image)
            result["traced_easel_per_round_over_image"] = easel / rounds / len(image)
            result["big_blocks"] = _big_blocks(snapshot, len(image))
            del snapshot
        hold.release()
        rig.fake.upload_hold = None
        for tag in tags:
            await timeline.wait(tag, "upload", timeout)
        await rig.settle()
        result.update({
            "base_rss_mib": base_rss / MIB,
            "gate_rss_mib": gate_rss / MIB,
            "peak_rss_mib": peak_rss / MIB,
            "peak_hwm_mib": peak_hwm / MIB,
            "per_round_mib": (peak_rss - base_rss) / rounds / MIB,
            "per_round_over_image": (peak_rss - base_rss) / rounds / len(image),
            "per_round_without_image_mib": (gate_rss - base_rss) / rounds / MIB,
            "image_stage_over_image": (peak_rss - gate_rss) / rounds / len(image),
            "hwm_per_round_over_image": (peak_hwm - base_rss) / rounds / len(image),
            "uploads": timeline.count("upload", tags),
            "outcomes": await rig.outcomes(),
            "faults": rig.faults(),
            "aborted_requests": rig.aborted_requests(),
        })
    return result


def rows(results: Sequence[dict[str, Any]]) -> list[Row]:
    out: list[Row] = []
    for r in results:
        label = f"memory, {r['platform']}, {r['rounds']} in flight"
        if r["tracemalloc"]:
            blocks = ", ".join(f"{b['site']} ×{b['blocks']} ({b['per_image']:.2f} img)" for b in r["big_blocks"][:3])
            ratio = r["traced_easel_per_round_over_image"]
            out.append(Row(label, "Python heap live at peak / round (tracemalloc, fake's buffers left out)",
                           f"{ratio:.2f}× image; large blocks: {blocks}", f"≤ {TARGET_RATIO}× image",
                           ratio <= TARGET_RATIO))
            continue
        image_mib = r["image_bytes"] / MIB
        out.append(Row(label, "peak RSS", f"{r['peak_rss_mib']:.0f} MiB (before burst {r['base_rss_mib']:.0f} MiB; "
                                          f"VmHWM {r['peak_hwm_mib']:.0f} MiB)"))
        out.append(Row(label, "RSS delta per in-flight round",
                       f"{r['per_round_mib']:.2f} MiB = {r['per_round_over_image']:.2f}× image ({image_mib:.2f} MiB);"
                       f" without image {r['per_round_without_image_mib']:.2f} MiB",
                       f"≤ {TARGET_RATIO}× image", r["per_round_over_image"] <= TARGET_RATIO))
    return out


def _isolated(platform: str, rounds: int, trace: bool) -> dict[str, Any]:
    """One pass in a fresh interpreter: RSS figures from a process that has not run anything else."""
    command = [sys.executable, "-m", "tests.bench.bench_memory", "--single", "--platform", platform,
               "--rounds", str(rounds)] + ([] if trace else ["--no-tracemalloc"])
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def run(platforms: Sequence[str] = PLATFORMS, rounds: int = 64, trace: bool = True,
              isolated: bool = False) -> dict[str, Any]:
    """`isolated`: each pass in its own process (what `main` does); else in this one (the smoke test)."""
    load = loadavg()
    results = []
    for platform in platforms:
        for traced in (False, True) if trace else (False,):
            if isolated:
                results.append(await asyncio.to_thread(_isolated, platform, rounds, traced))
            else:
                results.append(await run_platform(platform, rounds, trace=traced))
    return {"loadavg_1m_at_start": load,
            "params": {"platforms": list(platforms), "rounds": rounds, "tracemalloc": trace,
                       "provider": "BenchProvider (hand-written, a fresh ~1.6 MB 1024x1024 PNG per round)"},
            "results": results, "rows": rows_to_dicts(rows(results))}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", choices=PLATFORMS, action="append")
    parser.add_argument("--rounds", type=int, default=64)
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # one pass, JSON on stdout
    args = parser.parse_args(argv)
    if args.single:
        single = asyncio.run(run_platform((args.platform or PLATFORMS)[0], args.rounds,
                                          trace=not args.no_tracemalloc))
        print(json.dumps(single))
        return single
    data = asyncio.run(run(args.platform or PLATFORMS, args.rounds, trace=not args.no_tracemalloc, isolated=True))
    report(data, NAME)
    return data


if __name__ == "__main__":
    main()
