"""Fatal exits are remembered so that no supervisor can make Easel hot-loop its logins."""

from __future__ import annotations

from pathlib import Path

from bots.process import backoff


def test_back_off_doubles_and_clears(tmp_path: Path) -> None:
    assert backoff.delay_before_start(tmp_path, now=1000) == 0
    backoff.record_fatal(tmp_path, now=1000)
    assert backoff.delay_before_start(tmp_path, now=1000) == 60
    assert backoff.delay_before_start(tmp_path, now=1030) == 30
    backoff.record_fatal(tmp_path, now=1100)
    assert backoff.delay_before_start(tmp_path, now=1100) == 120
    for _ in range(10):
        backoff.record_fatal(tmp_path, now=1200)
    assert backoff.delay_before_start(tmp_path, now=1200) == backoff.MAX_DELAY
    assert backoff.delay_before_start(tmp_path, now=1200 + backoff.WINDOW + 1) == 0
    backoff.clear(tmp_path)
    assert backoff.delay_before_start(tmp_path, now=1200) == 0


def test_corrupt_record_is_ignored(tmp_path: Path) -> None:
    (tmp_path / backoff.FILE).write_text("{not json")
    assert backoff.delay_before_start(tmp_path) == 0
