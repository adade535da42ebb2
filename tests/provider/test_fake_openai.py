"""The fake OpenAI server itself, checked with the real SDK: the stream helper accepts its event order, and
its errors carry what the SDK reads (codes, retry headers, the real upload-mimetype refusal)."""

from __future__ import annotations

import asyncio
import base64

import openai
import pytest
from openai import AsyncOpenAI
from openai.types.responses.tool_param import ImageGeneration

from tests.fakes.fake_openai import FakeOpenAI, color, pixel, png
from tests.provider.support import make_client

TOOL: ImageGeneration = {"type": "image_generation", "model": "gpt-image-2", "partial_images": 2}


async def test_stream_helper_accepts_the_event_order(client: AsyncOpenAI) -> None:
    types: list[str] = []
    async with client.responses.stream(model="gpt-5.5", input="a cat", tools=[TOOL]) as stream:
        async for event in stream:
            types.append(event.type)
        final = await stream.get_final_response()

    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert types.count("response.image_generation_call.partial_image") == 2
    ig = final.output[0]
    assert ig.type == "image_generation_call" and ig.result is not None
    assert pixel(base64.b64decode(ig.result)) == color(1)
    assert final.output_text == "Here is your image."


async def test_sequence_numbers_count_up_from_zero(client: AsyncOpenAI) -> None:
    stream = await client.responses.create(model="gpt-5.5", input="a cat", tools=[TOOL], stream=True)
    numbers = [event.sequence_number async for event in stream]
    assert numbers == list(range(len(numbers)))


async def test_stored_responses_resolve_and_expire(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    first = await client.responses.create(model="gpt-5.5", input="a cat", tools=[TOOL])
    assert (await client.responses.retrieve(first.id)).id == first.id
    await client.responses.create(model="gpt-5.5", input="now blue", tools=[TOOL],
                                  previous_response_id=first.id)
    fake.forget_responses()

    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="gpt-5.5", input="now red", tools=[TOOL],
                                      previous_response_id=first.id)
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.request_id is not None


async def test_image_model_as_host_model_is_refused(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="gpt-image-2", input="a cat", tools=[TOOL])


async def test_unlabelled_upload_gets_the_real_mimetype_refusal(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.edit(image=png(8, (1, 1, 1)), prompt="x", model="gpt-image-2")
    assert "unsupported mimetype ('application/octet-stream')" in caught.value.message


async def test_retry_headers_are_what_the_sdk_obeys(fake: FakeOpenAI) -> None:
    # With the SDK's own retries on: a long Retry-After and x-should-retry:false both stop it at once.
    sdk = make_client(f"{fake.origin}/v1", max_retries=2)
    try:
        fake.fail_next("rate_limit", retry_after=300)
        with pytest.raises(openai.RateLimitError) as limited:
            await sdk.images.generate(prompt="x", model="gpt-image-2")
        fake.fail_next("insufficient_quota")
        with pytest.raises(openai.RateLimitError) as broke:
            await sdk.images.generate(prompt="x", model="gpt-image-2")
    finally:
        await sdk.close()
    assert limited.value.code == "rate_limit_exceeded"
    assert broke.value.code == "insufficient_quota"
    assert len(fake.calls) == 2


async def test_moderation_body_has_details(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.fail_next("moderation", stage="output")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.generate(prompt="x", model="gpt-image-2")
    assert caught.value.code == "moderation_blocked"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["moderation_details"]["moderation_stage"] == "output"


async def test_peak_concurrency_is_recorded(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.fail_next("slow", count=3, seconds=0.05)
    await asyncio.gather(*(client.images.generate(prompt="x", model="gpt-image-2") for _ in range(3)))
    assert fake.peak_in_flight == 3
    assert fake.billed == 3
