"""Several `easel run` workers on one throwaway PostgreSQL (the cluster of `tests/store/pg_cluster.py`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.store.pg_cluster import Cluster, running_cluster

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    return pg_cluster.create_database(f"easel_workers_{next(_databases)}")
