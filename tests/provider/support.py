"""Helpers shared by the provider tests."""

from __future__ import annotations

import ssl
from typing import Any

import openai
from openai import AsyncOpenAI

from core.ports import ImageJob
from core.provider.factory import MIN_CONNECTIONS
from core.provider.transport import http_client
from tests.fakes.fake_provider import NullEvents

API_KEY = "sk-test-provider-key-0123456789"
# Fragments of the fake's error texts and of SDK exception text: none may reach a user-facing message.
PROVIDER_TEXT = (
    "Error code",
    "safety_violations",
    "help.openai.com",
    "req_fake",
    "sk-",
    "quota, please",
    "Rate limit reached",
    "Sorry about that",
    "Request timed out",
    "Connection error",
    "{",
)


def assert_clean(message: str) -> None:
    """A user-facing message: ours, short, free of provider and exception text."""
    assert message and len(message) < 200, message
    for fragment in PROVIDER_TEXT:
        assert fragment not in message, (fragment, message)


class Events:
    """`ProviderEvents` that keeps what it got, in order: `taken` (response id, background), `progress`
    (seq, stage) and `got` (partial index, image)."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, bool]] = []
        self.progress: list[tuple[int, str]] = []
        self.got: list[tuple[int, bytes]] = []

    async def accepted(self, response_id: str, background: bool) -> None:
        self.taken.append((response_id, background))

    async def progressed(self, seq: int, stage: str) -> None:
        self.progress.append((seq, stage))

    async def partial(self, image: bytes, index: int) -> None:
        self.got.append((index, image))

    @property
    def seqs(self) -> list[int]:
        return [seq for seq, _ in self.progress]

    @property
    def indexes(self) -> list[int]:
        return [index for index, _ in self.got]


Partials = Events  # the older name, for the tests that only look at previews

ignore_partials = NullEvents()


def job(
    prompt: str = "a red fox in the snow",
    *,
    size: str = "1024x1024",
    quality: str = "medium",
    background: str | None = None,
    output_format: str | None = None,
    **fields: Any,
) -> ImageJob:
    params = {"size": size, "quality": quality}
    if background is not None:
        params["background"] = background
    if output_format is not None:
        params["output_format"] = output_format
    values: dict[str, Any] = {"params": params, "safety_id": "user-hash", "round_id": 7}
    values.update(fields)
    return ImageJob(prompt=prompt, **values)


# Building a TLS context (loading the CA bundle) is most of the cost of a new client; share one.
_TLS = ssl.create_default_context()


def make_client(base_url: str, **options: Any) -> AsyncOpenAI:
    """An SDK client on the HTTP client `build_provider` uses (`core.provider.transport`), so every provider
    test goes through the production transport."""
    settings: dict[str, Any] = {"api_key": API_KEY, "max_retries": 0, "timeout": 5, **options}
    timeout = settings["timeout"]
    bounds = timeout if isinstance(timeout, openai.Timeout) else openai.Timeout(timeout)
    client = http_client(timeout=bounds, max_connections=MIN_CONNECTIONS, verify=_TLS)
    return AsyncOpenAI(base_url=base_url, http_client=client, **settings)
