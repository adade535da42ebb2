"""Tiny runs of every benchmark so they cannot rot: each must produce its figures, with counts that add up and
no errors. Nothing here looks at how fast anything was (the benchmarks report times; tests never assert them)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.bench import bench_memory, bench_overhead, bench_throughput
from tests.bench._harness import PLATFORMS, Row, percentile, summary, write_json


def assert_summary(figures: dict[str, float], count: int) -> None:
    assert figures["n"] == count
    values = [figures[k] for k in ("median", "p90", "p99", "max")]
    assert all(math.isfinite(v) and v >= 0 for v in values), figures
    assert values == sorted(values), figures


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.0
    assert math.isnan(percentile([], 50))
    assert summary([1.0, 2.0, 3.0])["max"] == 3.0


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_overhead_tiny(platform: str) -> None:
    result = await bench_overhead.run_platform(platform, levels=(1, 3), rounds={1: 3, 3: 6}, in_flight_rounds=2,
                                               timeout=10)
    assert not result["faults"], result["faults"]
    levels = result["levels"]
    assert set(levels) == {"1", "3"} and set(levels["3"]) == {"saturated", "in-flight"}
    for modes in levels.values():
        for figures in modes.values():
            assert figures["uploads"] == figures["rounds"]
            for key in ("update_to_provider_ms", "answer_to_upload_ms", "update_to_upload_ms"):
                assert_summary(figures[key], figures["rounds"])
            assert figures["cpu_ms_per_round"] > 0
    assert levels["3"]["in-flight"]["parked"] == 2
    # 1 user x (1 warm-up + 3) + 3 users x (1 + 2) + in-flight: 2 parked + (1 + 2)
    assert result["provider_calls"] == 4 + 9 + 5
    assert result["outcomes"] == {"delivered": result["provider_calls"]}
    rows = bench_overhead.rows([result])
    assert any(r.met is None and "update→provider" in r.figure for r in rows)


async def test_throughput_tiny() -> None:
    result = await bench_throughput.run_platform("discord", users=6, rounds=2, cap=2, latency=0.02, timeout=10)
    assert not result["faults"], result["faults"]
    assert result["rounds"] == result["delivered_uploads"] == result["provider_calls"] == 12
    assert result["outcomes"] == {"delivered": 12}
    assert result["provider_peak"] == 2  # the cap held, and was reached
    assert result["acks"] == 12
    assert_summary(result["ack_ms"], 12)
    assert_summary(result["queue_wait_ms"], 12)
    assert_summary(result["user_total_s"], 6)
    assert result["total_s"] > 0 and result["ideal_s"] == pytest.approx(12 / 2 * 0.02)
    rows = bench_throughput.rows([result])
    assert [r.met for r in rows if r.figure == "provider peak concurrency"] == [True]
    assert any(r.benchmark.startswith("acknowledgement") for r in rows)


@pytest.mark.parametrize(("platform", "trace"), [("telegram", False), ("discord", True)])
async def test_memory_tiny(platform: str, trace: bool) -> None:
    result = await bench_memory.run_platform(platform, rounds=3, trace=trace, timeout=10)
    assert not result["faults"], result["faults"]
    assert result["uploads"] == 3
    assert result["outcomes"] == {"delivered": 3 + 2}  # two warm-up rounds
    assert 1_000_000 < result["image_bytes"] < 3_000_000  # a real 1024x1024 PNG
    assert result["peak_rss_mib"] >= result["base_rss_mib"] > 0
    assert math.isfinite(result["per_round_over_image"])
    if trace:
        # Each round's image is live at the peak: the provider's fresh copies are found by name.
        sites = {block["site"]: block["blocks"] for block in result["big_blocks"]}
        assert sites.get(next(s for s in sites if s.startswith("tests/bench/_harness.py"))) == 3
        assert result["traced_easel_per_round_over_image"] >= 1.0
    assert bench_memory.rows([result])


def test_json_and_rows(tmp_path: Path) -> None:
    row = Row("b", "f", "1 ms", "≤ 2 ms", True)
    path = write_json("unit", {"rows": [vars(row)], "nan": math.nan}, directory=tmp_path)
    data: dict[str, Any] = json.loads(path.read_text())
    assert data["benchmark"] == "unit" and data["rows"][0]["met"] is True
    assert data["machine"]["nproc"] and data["machine"]["python"]
    assert data["nan"] is None  # strict JSON
