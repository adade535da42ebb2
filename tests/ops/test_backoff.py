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


def test_a_changed_token_skips_the_back_off_and_no_token_is_stored(tmp_path: Path) -> None:
    old = backoff.token_fingerprint("123456:old-token-old-token-old-token", None)
    new = backoff.token_fingerprint("123456:new-token-new-token-new-token", None)
    assert old != new and old == backoff.token_fingerprint("123456:old-token-old-token-old-token", None)
    backoff.record_fatal(tmp_path, now=1000, fingerprint=old)
    assert "old-token" not in (tmp_path / backoff.FILE).read_text()
    assert backoff.delay_before_start(tmp_path, now=1000, fingerprint=old) == 60
    assert backoff.delay_before_start(tmp_path, now=1000, fingerprint=new) == 0
    assert backoff.delay_before_start(tmp_path, now=1000) == 60  # no fingerprint given: as before
    backoff.record_fatal(tmp_path, now=1000, fingerprint=new)  # the new token failed too: a fresh count
    assert backoff.delay_before_start(tmp_path, now=1000, fingerprint=new) == 60


def test_the_waiting_message_says_how_to_skip_it(tmp_path: Path) -> None:
    message = backoff.waiting_message(60, tmp_path)
    assert "waiting 60 s" in message and "new token" in message and str(tmp_path / backoff.FILE) in message


def test_the_record_creates_a_private_data_dir(tmp_path: Path) -> None:
    backoff.record_fatal(tmp_path / "data", now=1000)
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_stamp_and_forget_if_changed(tmp_path: Path) -> None:
    backoff.record_fatal(tmp_path, now=1000)  # recorded without a fingerprint (by the runner)
    assert not backoff.forget_if_changed(tmp_path, "aaaa")  # no fingerprint yet: keep it
    backoff.stamp(tmp_path, "aaaa")
    assert not backoff.forget_if_changed(tmp_path, "aaaa")
    assert backoff.delay_before_start(tmp_path, now=1000) == 60
    assert backoff.forget_if_changed(tmp_path, "bbbb")
    assert backoff.delay_before_start(tmp_path, now=1000) == 0
