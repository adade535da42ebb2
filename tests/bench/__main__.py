"""Run every benchmark and print one table of figures against targets: `python -m tests.bench`.

Each benchmark also prints its own table and writes bench-results/<name>.json; the combined table goes to
bench-results/all.json. Nothing here asserts on times: a missed target is reported, not raised."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

from tests.bench import bench_memory, bench_overhead, bench_throughput
from tests.bench._harness import Row, print_table, report, write_json


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    started = time.perf_counter()
    sections: dict[str, Any] = {}
    overhead = asyncio.run(bench_overhead.run())
    report(overhead, bench_overhead.NAME)
    sections["overhead"] = overhead
    throughput = asyncio.run(bench_throughput.run())
    report(throughput, bench_throughput.NAME)
    sections["throughput"] = throughput
    memory = asyncio.run(bench_memory.run(isolated=True))
    report(memory, bench_memory.NAME)
    sections["memory"] = memory
    rows = [Row(**r) for section in sections.values() for r in section["rows"]]
    targeted = [r for r in rows if r.met is not None]
    print_table("Easel benchmarks: figures with a target", targeted)
    faults = {name: [res["faults"] for res in data["results"] if res["faults"]] for name, data in sections.items()}
    faults = {name: found for name, found in faults.items() if found}
    if faults:
        print(f"  faults seen: {faults}")
    path = write_json("all", {"elapsed_s": time.perf_counter() - started,
                              "rows": [vars(r) for r in rows], "faults": faults})
    print(f"  -> {path}  ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
