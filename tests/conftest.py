"""Shared fixtures: settings on a temporary data dir, and the real core built by the composition root with
the hand-written fake provider plugged in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bots.process.app import Core, open_core
from bots.process.config import Settings, load_settings
from tests.fakes.fake_provider import FakeProvider


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**env: Any) -> Settings:
        values = {"OPENAI_API_KEY": "sk-test-not-a-real-key", "EASEL_DATA_DIR": str(tmp_path / "data")}
        values.update({k: str(v) for k, v in env.items()})
        return load_settings(values, dotenv=None)

    return make


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
async def core(make_settings: Callable[..., Settings], provider: FakeProvider) -> AsyncIterator[Core]:
    async with open_core(make_settings(), provider=provider) as built:
        yield built
