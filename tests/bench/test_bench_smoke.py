"""Keeps the ledger benchmark from rotting: a tiny run through its command line, figures only checked to exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.bench_ledger import main


def test_ledger_benchmark_produces_positive_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results" / "ledger.json"
    report = main(["--pairs", "20", "--tasks", "1,4", "--rounds", "8", "--out", str(out), "--data-dir", str(tmp_path)])
    assert json.loads(out.read_text()) == report
    assert report["store"]["journal_mode"] == "wal" and report["store"]["synchronous"] == "FULL"
    assert report["machine"]["nproc"] >= 1 and report["machine"]["cpu_model"]
    rows = {(r["mode"], r["tasks"]): r for r in report["results"]}
    assert set(rows) == {("sequential", 1), ("concurrent", 4), ("whole round", 1), ("whole round", 4)}
    for row in rows.values():
        assert row["per_second"] > 0 and row["txn_per_second"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    printed = capsys.readouterr().out
    assert "pairs per second" in printed and "sequential" in printed
