"""Helpers shared by the provider tests."""

from __future__ import annotations

import ssl
from typing import Any

import openai
from openai import AsyncOpenAI

from core.images import ImageJob

API_KEY = "sk-test-provider-key-0123456789"
# Fragments of the fake's error texts and of SDK exception text: none may reach a user-facing message.
PROVIDER_TEXT = ("Error code", "safety_violations", "help.openai.com", "req_fake", "sk-", "quota, please",
                 "Rate limit reached", "Sorry about that", "Request timed out", "Connection error", "{")


def assert_clean(message: str) -> None:
    """A user-facing message: ours, short, free of provider and exception text."""
    assert message and len(message) < 200, message
    for fragment in PROVIDER_TEXT:
        assert fragment not in message, (fragment, message)


class Partials:
    """An `on_partial` callback that keeps what it got, in order."""

    def __init__(self) -> None:
        self.got: list[tuple[int, bytes]] = []

    async def __call__(self, image: bytes, index: int) -> None:
        self.got.append((index, image))


def job(prompt: str = "a red fox in the snow", **fields: Any) -> ImageJob:
    values: dict[str, Any] = {"size": "1024x1024", "quality": "medium", "safety_id": "user-hash", "round_id": 7}
    values.update(fields)
    return ImageJob(prompt=prompt, **values)


async def ignore_partials(image: bytes, index: int) -> None:
    """For tests that do not look at previews."""


# Building a TLS context (loading the CA bundle) is most of the cost of a new client; share one.
_TLS = ssl.create_default_context()


def make_client(base_url: str, **options: Any) -> AsyncOpenAI:
    settings: dict[str, Any] = {"api_key": API_KEY, "max_retries": 0, "timeout": 5, **options}
    return AsyncOpenAI(base_url=base_url, http_client=openai.DefaultAsyncHttpxClient(verify=_TLS), **settings)
