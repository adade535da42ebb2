"""The store contract suite runs every test against each backend behind `core.ports.Store`: SQLite in a
temporary directory, and PostgreSQL in a throwaway cluster started once per session (`pg_cluster.py`), with a
fresh database per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from core.ports import Store
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore
from tests.store.pg_cluster import Cluster, running_cluster

BACKENDS = ["sqlite", "postgres"]
_databases = itertools.count(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    """Under CI (`CI` set) a PostgreSQL test that would skip fails instead: those tests must run there."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]  # pluggy's result object
    if os.environ.get("CI") and report.skipped and "postgres" in f"{item.nodeid} {report.longrepr}".lower():
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where the PostgreSQL tests must run: {report.longrepr}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh, empty database in the session's cluster."""
    return pg_cluster.create_database(f"easel_test_{next(_databases)}")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        async with SqliteStore(tmp_path / "data" / "easel.db") as opened:
            yield opened
    else:
        url = request.getfixturevalue("pg_url")
        async with PostgresStore(url) as pg:
            yield pg
