"""`build_provider`: one client with the SDK's retries off, the route from settings, OPENAI_BASE_URL honoured
when the setting is unset, background mode on by default (with the short per-call timeout) and off on demand."""

from __future__ import annotations

import pytest

from core.errors import ConfigError, ProviderBusy
from core.provider.factory import build_provider, transparent_model
from core.provider.images_api import ImagesProvider
from core.provider.responses import ResponsesProvider
from core.settings import CoreSettings
from tests.fakes.fake_openai import FakeOpenAI, color, pixel
from tests.provider.support import ignore_partials, job, make_client


async def test_openai_base_url_from_the_environment_is_used(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.origin}/v1")
    provider = build_provider(CoreSettings(openai_api_key="sk-from-settings", partial_images=0))
    try:
        result = await provider.create(job(), ignore_partials)
    finally:
        await provider.aclose()

    assert isinstance(provider, ResponsesProvider)
    assert provider.background
    assert pixel(result.image) == color(1)
    call = fake.calls_to("POST /v1/responses")[0]
    assert call.headers["authorization"] == "Bearer sk-from-settings"
    assert call.headers["x-stainless-read-timeout"] == "60.0"  # EASEL_PROVIDER_CALL_TIMEOUT, not the SDK's 600
    assert call.params["background"] is True
    assert call.params["model"] == "gpt-5.5"
    assert call.params["tools"][0]["model"] == "gpt-image-2"


async def test_background_mode_off_streams_in_the_foreground(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.origin}/v1")
    provider = build_provider(CoreSettings(openai_api_key="sk-x", background_mode=False))
    try:
        await provider.create(job(), ignore_partials)
    finally:
        await provider.aclose()

    assert not provider.background
    call = fake.calls_to("POST /v1/responses")[0]
    assert "background" not in call.params
    assert call.params["stream"] is True
    assert call.headers["x-stainless-read-timeout"] == "240.0"  # EASEL_PROVIDER_TIMEOUT for a whole call


async def test_the_setting_wins_over_the_environment(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    settings = CoreSettings(openai_api_key="sk-x", openai_base_url=f"{fake.origin}/v1", image_api="images",
                            image_model="gpt-image-2.5-flare", partial_images=1)
    provider = build_provider(settings)
    try:
        await provider.create(job(), ignore_partials)
    finally:
        await provider.aclose()

    assert isinstance(provider, ImagesProvider)
    assert not provider.background
    call = fake.calls_to("POST /v1/images/generations")[0]
    assert call.params["model"] == "gpt-image-2.5-flare"
    assert call.params["partial_images"] == 1


async def test_sdk_retries_are_off_and_ours_follow_the_setting(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.origin}/v1")
    fake.fail_next("server_error", count=10)
    provider = build_provider(CoreSettings(openai_api_key="sk-x", provider_retries=1), backoff=0.01)
    try:
        with pytest.raises(ProviderBusy):
            await provider.create(job(), ignore_partials)
    finally:
        await provider.aclose()

    calls = fake.calls_to("POST /v1/responses")
    assert len(calls) == 2  # one attempt plus one retry of ours; the SDK added none
    assert [c.headers["x-stainless-retry-count"] for c in calls] == ["0", "0"]


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_provider(CoreSettings(openai_api_key=""))


def test_transparent_model_setting() -> None:
    assert transparent_model(CoreSettings(openai_api_key="sk-x")) is None
    assert transparent_model(CoreSettings(openai_api_key="sk-x", transparent_model="gpt-image-1.5")) == "gpt-image-1.5"


async def test_aclose_closes_the_client(fake: FakeOpenAI) -> None:
    client = make_client(f"{fake.origin}/v1", api_key="sk-x")
    provider = build_provider(CoreSettings(openai_api_key="sk-x"), client)
    await provider.aclose()
    assert client.is_closed()
