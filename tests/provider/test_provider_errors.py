"""Every OpenAI failure maps to the right `ProviderError` with our own wording, and Easel retries only where
no image can have been made (asserted through the fake's request counts and `billed` counter)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest

from core.errors import (
    ProviderBusy,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    SafetyRefusal,
)
from core.provider.images_api import ImagesProvider
from core.provider.responses import ResponsesProvider
from tests.fakes.fake_openai import FakeOpenAI, color, pixel
from tests.provider.support import API_KEY, Partials, assert_clean, ignore_partials, job, make_client

Provider = ResponsesProvider | ImagesProvider
MakeProvider = Callable[..., Provider]
ROUTES = ["responses", "images"]
FIRST_CALL = {"responses": "POST /v1/responses", "images": "POST /v1/images/generations"}


@pytest.fixture(params=ROUTES)
def make(request: pytest.FixtureRequest, make_responses: MakeProvider, make_images: MakeProvider) -> MakeProvider:
    return make_responses if request.param == "responses" else make_images


def requests(fake: FakeOpenAI) -> int:
    return len([c for c in fake.calls if c.method.startswith("POST")])


async def fails(provider: Provider, error: type[ProviderError], on_partial: Any = ignore_partials) -> Any:
    with pytest.raises(error) as caught:
        await provider.create(job(), on_partial)
    assert_clean(caught.value.message)
    return caught.value


# ---- safety ---------------------------------------------------------------------------------------------


async def test_moderation_on_the_prompt_is_a_safety_refusal(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("moderation", stage="input")

    error = await fails(make(), SafetyRefusal)

    assert "rewording the prompt" in error.message
    assert requests(fake) == 1


async def test_moderation_of_the_result_says_the_image_was_blocked(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("moderation", stage="output")

    error = await fails(make(), SafetyRefusal)

    assert "finished image" in error.message
    assert requests(fake) == 1


@pytest.mark.parametrize("partial_images", [0, 2])
async def test_failed_image_call_in_a_response_is_a_safety_refusal(
    fake: FakeOpenAI, make_responses: Any, partial_images: int
) -> None:
    fake.fail_next("ig_failed", stage="output")

    error = await fails(make_responses(partial_images=partial_images), SafetyRefusal)

    assert "finished image" in error.message
    assert requests(fake) == 1
    assert fake.billed == 0


async def test_moderation_inside_an_images_stream_is_a_safety_refusal(
    fake: FakeOpenAI, make_images: Any
) -> None:
    fake.fail_next("ig_failed", stage="output")

    await fails(make_images(), SafetyRefusal)

    assert requests(fake) == 1


# ---- rate limits and quota ---------------------------------------------------------------------------------


async def test_short_rate_limit_is_retried_after_the_asked_wait(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("rate_limit", retry_after_ms=30)

    result = await make().create(job(), ignore_partials)

    assert requests(fake) == 2
    assert pixel(result.image) == color(1)  # the refused request made no image
    assert fake.billed == 1


async def test_rate_limit_retries_are_bounded(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("rate_limit", count=5, retry_after_ms=10)

    error = await fails(make(retries=2), ProviderBusy)

    assert requests(fake) == 3
    assert fake.billed == 0
    assert error.retry_after > 0


async def test_long_rate_limit_is_not_retried_and_says_how_long(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("rate_limit", retry_after=300)

    error = await fails(make(), ProviderBusy)

    assert requests(fake) == 1
    assert error.retry_after == 300
    assert "try again in 300 s" in error.message


async def test_insufficient_quota_is_never_retried_and_tells_the_operator(
    fake: FakeOpenAI, make: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("insufficient_quota", count=3)

    with caplog.at_level(logging.INFO, logger="core.provider"):
        error = await fails(make(), ProviderUnavailable)

    assert requests(fake) == 1
    assert "operator" in error.message
    operator_logs = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(operator_logs) == 1
    assert "round 7" in operator_logs[0].getMessage()
    assert "req_fake_1" in operator_logs[0].getMessage()
    assert API_KEY not in caplog.text


@pytest.mark.parametrize("kind", ["unauthorized", "forbidden", "not_found"])
async def test_account_problems_are_unavailable_and_logged_without_the_key(
    fake: FakeOpenAI, make: MakeProvider, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    fake.fail_next(kind, count=3)

    with caplog.at_level(logging.INFO, logger="core.provider"):
        await fails(make(), ProviderUnavailable)

    assert requests(fake) == 1
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert "sk-" not in caplog.text


# ---- server errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_error_then_success_is_retried_once(
    fake: FakeOpenAI, make: MakeProvider, status: int
) -> None:
    fake.fail_next("server_error", status=status)

    result = await make().create(job(), ignore_partials)

    assert requests(fake) == 2
    assert pixel(result.image) == color(1)  # the refused request made no image
    assert fake.billed == 1


async def test_server_errors_give_up_after_the_retry_budget(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("server_error", count=10)

    error = await fails(make(retries=2), ProviderBusy)

    assert requests(fake) == 3
    assert "try again in" in error.message


async def test_no_retries_when_the_budget_is_zero(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("server_error", count=10)

    await fails(make(retries=0), ProviderBusy)

    assert requests(fake) == 1


@pytest.mark.parametrize("kind", ["response_failed", "error_event", "stream_api_error"])
async def test_stream_failure_before_any_output_is_retried(
    fake: FakeOpenAI, make_responses: Any, kind: str, partials: Partials
) -> None:
    fake.fail_next(kind, code="server_error")

    result = await make_responses().create(job(), partials)

    assert requests(fake) == 2
    assert pixel(result.image) == color(2)
    assert [index for index, _ in partials.got] == [0, 1]


@pytest.mark.parametrize("kind", ["response_failed", "error_event", "stream_api_error"])
async def test_stream_failure_after_a_preview_is_not_retried(
    fake: FakeOpenAI, make_responses: Any, kind: str, partials: Partials
) -> None:
    fake.fail_next(kind, code="server_error", after_partials=1)

    await fails(make_responses(), ProviderBusy, partials)

    assert requests(fake) == 1
    assert len(partials.got) == 1


async def test_images_stream_error_after_a_preview_is_not_retried(
    fake: FakeOpenAI, make_images: Any, partials: Partials
) -> None:
    fake.fail_next("stream_api_error", after_partials=1)

    await fails(make_images(), ProviderBusy, partials)

    assert requests(fake) == 1


async def test_stream_error_with_quota_code_is_unavailable(fake: FakeOpenAI, make_responses: Any) -> None:
    fake.fail_next("error_event", code="insufficient_quota")

    await fails(make_responses(), ProviderUnavailable)

    assert requests(fake) == 1


async def test_dropped_stream_after_a_preview_is_busy_and_not_retried(
    fake: FakeOpenAI, make: MakeProvider, partials: Partials
) -> None:
    fake.fail_next("stream_drop", after_partials=1)

    await fails(make(), ProviderBusy, partials)

    assert requests(fake) == 1


async def test_stream_dropped_after_the_image_still_delivers_it(fake: FakeOpenAI, make_responses: Any) -> None:
    # The image exists and is billed: losing the tail of the stream must not lose the image.
    fake.fail_next("stream_drop", after_image=True)

    result = await make_responses().create(job(), ignore_partials)

    assert pixel(result.image) == color(1)
    assert result.image_call_id == "ig_fake_1"
    assert requests(fake) == 1 and fake.billed == 1


async def test_in_band_invalid_prompt_is_rejected_without_retry(fake: FakeOpenAI, make_responses: Any) -> None:
    fake.fail_next("response_failed", code="invalid_prompt")

    await fails(make_responses(), ProviderRejected)

    assert requests(fake) == 1


async def test_dropped_connection_before_an_answer_is_not_retried(fake: FakeOpenAI, make: MakeProvider) -> None:
    # The request reached the server, which may be making (and billing) the image.
    fake.fail_next("disconnect")

    await fails(make(), ProviderBusy)

    assert requests(fake) == 1


# ---- bad requests --------------------------------------------------------------------------------------


async def test_other_bad_request_is_rejected_with_a_generic_message(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("bad_request", count=3)

    error = await fails(make(), ProviderRejected)

    assert "Invalid value" not in error.message
    assert requests(fake) == 1


async def test_bad_input_image_code_says_so(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("bad_request", code="invalid_image_format", message="Invalid image format: tiff.")

    error = await fails(make(), ProviderRejected)

    assert "picture" in error.message
    assert requests(fake) == 1


# ---- timeouts and cancellation ---------------------------------------------------------------------------


async def test_hung_call_times_out_once_and_is_not_retried(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("hang")

    await fails(make(timeout=0.2), ProviderTimeout)

    assert requests(fake) == 1


async def test_sdk_read_timeout_is_a_provider_timeout_and_not_retried(fake: FakeOpenAI) -> None:
    fake.fail_next("hang", count=3)
    sdk = make_client(f"{fake.origin}/v1", timeout=0.2)
    try:
        await fails(ResponsesProvider(sdk, host_model="gpt-5.5", image_model="gpt-image-2", backoff=0.01),
                    ProviderTimeout)
    finally:
        await sdk.close()

    assert requests(fake) == 1


async def test_stream_that_hangs_after_a_preview_times_out(
    fake: FakeOpenAI, make: MakeProvider, partials: Partials
) -> None:
    fake.fail_next("stream_hang", after_partials=1)

    await fails(make(timeout=0.2), ProviderTimeout, partials)

    assert requests(fake) == 1
    assert len(partials.got) == 1


async def test_cancelling_a_call_propagates(fake: FakeOpenAI, make: MakeProvider) -> None:
    fake.fail_next("hang")
    provider = make()
    task = asyncio.create_task(provider.create(job(), ignore_partials))
    await fake.wait_for(FIRST_CALL[provider.route])

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelling_during_a_retry_wait_stops_at_once(
    fake: FakeOpenAI, make: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("rate_limit", retry_after=15)  # short enough to wait for, long enough to cancel
    provider = make()
    with caplog.at_level(logging.INFO, logger="core.provider"):
        task = asyncio.create_task(provider.create(job(), ignore_partials))
        for _ in range(10_000):  # until the provider has started its 15 s wait
            if any(r.getMessage().startswith("retrying image call in 15.00s") for r in caplog.records):
                break
            await asyncio.sleep(0)
        else:
            raise AssertionError("the provider never started waiting")

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert requests(fake) == 1


# ---- connection refused ----------------------------------------------------------------------------------


async def test_refused_connection_is_retried_then_busy(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sdk = make_client(f"http://127.0.0.1:{port}/v1", timeout=2)
    provider = ResponsesProvider(sdk, host_model="gpt-5.5", image_model="gpt-image-2", retries=2, backoff=0.01)
    try:
        with caplog.at_level(logging.INFO, logger="core.provider"):
            error = await fails(provider, ProviderBusy)
    finally:
        await provider.aclose()

    assert "can't be reached" in error.message
    assert len([r for r in caplog.records if r.getMessage().startswith("retrying")]) == 2

