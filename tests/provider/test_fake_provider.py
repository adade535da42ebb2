"""The hand-written fake of the provider port: it is an `ImageProvider` (checked by mypy here), reports what
the port promises, and its background mode resumes, forgets and cancels like the real route."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import ProviderError, ResponseGone
from core.ports import ImageJob, ImageProvider
from tests.fakes.fake_openai import alphas
from tests.fakes.fake_provider import FakeProvider
from tests.provider.support import Events


def _job(background: str | None = None) -> ImageJob:
    params = {"size": "1024x1024", "quality": "medium"}
    if background:
        params["background"] = background
    return ImageJob(prompt="a fox", params=params)


async def test_the_fake_is_an_image_provider() -> None:
    provider: ImageProvider = FakeProvider(partials=2, background=True)
    events = Events()

    result = await provider.create(_job("transparent"), events)

    assert events.taken == [("resp_1", True)]
    assert events.indexes == [0, 1]
    assert events.seqs == [0, 1, 2]
    assert alphas(result.image) == (0, 255)
    assert provider.background


async def test_background_resume_forget_and_cancel() -> None:
    fake = FakeProvider(background=True, gate=asyncio.Event())
    waiting = asyncio.create_task(fake.create(_job(), Events()))
    await asyncio.sleep(0)
    assert "resp_1" in fake.held
    fake.gate = None  # a resume after a "restart" finishes at once
    assert (await fake.resume("resp_1", 0, Events())).response_id == "resp_1"
    with pytest.raises(ResponseGone):
        await fake.resume("resp_9", None, Events())

    fake.gate = asyncio.Event()
    second = asyncio.create_task(fake.create(_job(), Events()))
    await asyncio.sleep(0)
    await fake.cancel("resp_2")
    with pytest.raises(ProviderError) as caught:
        await second
    assert caught.value.msg_id == "provider.cancelled"
    assert fake.cancelled == ["resp_2"]
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
