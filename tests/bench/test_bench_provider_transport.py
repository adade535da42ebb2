"""Keeps the provider-client benchmark from rotting: a tiny run through its command line, figures only printed."""

from __future__ import annotations

import pytest

from tests.bench.bench_provider_transport import main


def test_provider_transport_benchmark_prints_every_client(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--calls", "10", "--concurrency", "5", "--runs", "1"]) == 0
    printed = capsys.readouterr().out
    for client in ("httpx2", "aiohttp (SDK)", "aiohttp (Easel)"):
        assert client in printed
