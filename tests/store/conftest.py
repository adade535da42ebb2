"""The store contract suite runs every test against each backend behind `core.ports.Store`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.ports import Store
from core.store.sqlite import SqliteStore

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        async with SqliteStore(tmp_path / "data" / "easel.db") as opened:
            yield opened
    else:  # pragma: no cover - every backend is listed above
        raise AssertionError(request.param)
