"""Without PostgreSQL binaries the PostgreSQL tests skip locally, and fail under CI."""

from __future__ import annotations

import pytest

from tests.store import pg_cluster


def test_missing_binaries_skip_locally_and_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_cluster, "find_bin_dir", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        pg_cluster.require_bin_dir()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run"):
        pg_cluster.require_bin_dir()
