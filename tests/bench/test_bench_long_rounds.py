"""Keeps the long-rounds benchmark working: a tiny run; it must deliver each restarted round once and charge
once, and refund every cancel (the figures themselves are only printed)."""

from __future__ import annotations

from tests.bench.bench_long_rounds import main


def test_long_rounds_benchmark_charges_once_and_refunds_cancels() -> None:
    report = main(["--restarts", "3", "--cancels", "5"])
    assert report["restart"] == {
        "restarts": 3, "delivered_once": 3, "extra_charges": 0, "interrupted_notices": 0, "provider_jobs": 3,
    }
    assert report["cancel"]["refunded"] == 5 and report["cancel"]["credits_used_after"] == 0
