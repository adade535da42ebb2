"""Keeps the closed-loop benchmark from rotting: `easel run` in its own process, 10 users x 1 round and a burst
of 5, on both platforms. Figures are only checked to exist; correctness (each request answered once, charged =
delivered) is checked because a tiny run has no reason to miss it."""

from __future__ import annotations

import pytest

from tests.bench.bench_closed_loop import run, table_rows


@pytest.mark.parametrize("platform", ["telegram", "discord"])
async def test_closed_loop_benchmark_runs_the_bot_in_its_own_process(platform: str) -> None:
    report = await run(platform, runs=1, users=10, rounds=1, burst_users=5, latency=0.05, timeout=30,
                       settle=0.1)
    only = report["runs"][0]
    loop, burst = only["closed_loop"], only["burst"]
    assert loop["requests"] == 10 and loop["answered_once"] == 10
    assert burst["requests"] == 5 and burst["answered_once"] == 5
    assert only["db"]["rounds_by_status"] == {"delivered": 15} and only["db"]["charged_rounds"] == 15
    assert report["median"]["charged_equals_delivered"]
    assert loop["cpu_s"] > 0 and loop["calls_per_request"] >= 1 and loop["vm_hwm_mib"] > 0
    assert loop["makespan_s"] > 0 and burst["overhead_ms"]["median"] == burst["overhead_ms"]["median"]  # not NaN
    assert only["exit_code"] == 0
    assert only["slot_hold_ms"]["rounds"] == 15  # every delivery logged its slot's hold
    assert only["slot_hold_ms"]["median"] >= 50  # at least the provider's 50 ms
    assert table_rows(platform, report["median"], 1)
