"""Fixtures for the provider tests: the fake OpenAI server, a real `AsyncOpenAI` pointed at it with the SDK's
retries off, and the providers built on that client with a tiny backoff so retries stay fast. `make_responses`
runs rounds in the foreground (a plain stream); `make_background` in the provider's background mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from openai import AsyncOpenAI

from core.provider.images_api import ImagesProvider
from core.provider.responses import ResponsesProvider
from tests.fakes.fake_openai import FakeOpenAI
from tests.provider.support import Events, make_client


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    async with server:
        yield server
        assert not server.fake_errors, server.fake_errors[0]


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    sdk = make_client(f"{fake.origin}/v1")
    yield sdk
    await sdk.close()


def _options(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "image_model": "gpt-image-2", "partial_images": 2, "retries": 2, "timeout": 5.0, "backoff": 0.01,
        "max_backoff": 0.05,
    }
    options.update(overrides)
    return options


@pytest.fixture
def make_responses(client: AsyncOpenAI) -> Callable[..., ResponsesProvider]:
    def make(**overrides: Any) -> ResponsesProvider:
        return ResponsesProvider(client, host_model="gpt-5.5", **_options(**overrides))

    return make


@pytest.fixture
def make_background(client: AsyncOpenAI) -> Callable[..., ResponsesProvider]:
    def make(**overrides: Any) -> ResponsesProvider:
        options = {"background": True, "call_timeout": 2.0, "poll_interval": 0.01, "max_poll_interval": 0.05,
                   **overrides}
        return ResponsesProvider(client, host_model="gpt-5.5", **_options(**options))

    return make


@pytest.fixture
def make_images(client: AsyncOpenAI) -> Callable[..., ImagesProvider]:
    def make(**overrides: Any) -> ImagesProvider:
        return ImagesProvider(client, **_options(**overrides))

    return make


@pytest.fixture
def partials() -> Events:
    return Events()


@pytest.fixture
def events() -> Events:
    return Events()
