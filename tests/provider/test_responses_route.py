"""The Responses route against the fake OpenAI server: generation, edit rounds through
`previous_response_id`, the fallback to re-sending the parent image, user photos, partial previews, usage."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable

import pytest
from PIL import Image

from core.errors import UnknownRound
from core.ports import ParentImage, Usage
from core.provider.responses import ResponsesProvider
from tests.fakes.fake_openai import FakeOpenAI, color, pixel, png
from tests.fakes.fake_provider import NullEvents
from tests.provider.support import Partials, assert_clean, ignore_partials, job

MakeProvider = Callable[..., ResponsesProvider]


async def test_generate_streams_partials_and_returns_the_image(
    fake: FakeOpenAI, make_responses: MakeProvider, partials: Partials
) -> None:
    result = await make_responses().create(job(), partials)

    assert result.image == fake.images[0]
    assert pixel(result.image) == color(1)
    assert result.mime == "image/png"
    assert [index for index, _ in partials.got] == [0, 1]
    assert all(image.startswith(b"\x89PNG") for _, image in partials.got)
    assert result.response_id == "resp_fake_1"
    assert result.image_call_id == "ig_fake_1"
    assert result.revised_prompt == "a red fox in the snow (revised)"
    assert result.request_id == "req_fake_1"
    assert result.usage == Usage(
        text_input_tokens=30, image_input_tokens=0, image_output_tokens=272, host_input_tokens=120,
        host_output_tokens=40,
    )

    call = fake.calls_to("POST /v1/responses")[0]
    body = call.params
    assert body["model"] == "gpt-5.5"  # the host model, never the image model
    assert body["stream"] is True
    assert body["tool_choice"] == {"type": "image_generation"}
    assert body["safety_identifier"] == "user-hash"
    assert "previous_response_id" not in body
    assert body["tools"] == [{
        "type": "image_generation", "model": "gpt-image-2", "size": "1024x1024", "quality": "medium",
        "output_format": "png", "partial_images": 2,
    }]
    assert body["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "a red fox in the snow"}]}]
    assert call.headers["x-stainless-retry-count"] == "0"
    assert call.headers["authorization"].startswith("Bearer ")
    assert fake.billed == 1


async def test_generate_without_partials_does_not_stream(
    fake: FakeOpenAI, make_responses: MakeProvider, partials: Partials
) -> None:
    result = await make_responses(partial_images=0).create(job(), partials)

    assert pixel(result.image) == color(1)
    assert partials.got == []
    assert result.response_id == "resp_fake_1"
    assert result.usage is not None and result.usage.image_output_tokens == 272
    body = fake.calls_to("POST /v1/responses")[0].params
    assert "stream" not in body
    assert "partial_images" not in body["tools"][0]


async def test_fewer_partials_than_asked_is_fine(
    fake: FakeOpenAI, make_responses: MakeProvider, partials: Partials
) -> None:
    fake.partials_override = 1
    result = await make_responses(partial_images=3).create(job(), partials)

    assert [index for index, _ in partials.got] == [0]
    assert pixel(result.image) == color(1)


async def test_partials_arrive_in_order_each_awaited_before_the_next(
    fake: FakeOpenAI, make_responses: MakeProvider
) -> None:
    seen: list[str] = []

    class Slow(NullEvents):
        async def partial(self, image: bytes, index: int) -> None:
            seen.append(f"start {index} {pixel(image)[0]}")
            await asyncio.sleep(0)  # a slow consumer must not reorder or overlap previews
            seen.append(f"end {index}")

    result = await make_responses(partial_images=3).create(job(), Slow())

    assert seen == ["start 0 0", "end 0", "start 1 60", "end 1", "start 2 120", "end 2"]
    assert pixel(result.image) == color(1)


async def test_edit_round_continues_from_the_parent_response(
    fake: FakeOpenAI, make_background: MakeProvider
) -> None:
    provider = make_background()
    first = await provider.create(job(), ignore_partials)
    parent = ParentImage(image=first.image, response_id=first.response_id, image_call_id=first.image_call_id)

    second = await provider.create(job("make it night", parent=parent), ignore_partials)

    assert pixel(second.image) == color(2)
    assert second.response_id == "resp_fake_2"
    body = fake.calls_to("POST /v1/responses")[1].params
    assert body["previous_response_id"] == "resp_fake_1"
    assert fake.input_images(fake.calls[1]) == []  # no bytes resent
    assert len(fake.calls) == 2
    assert second.usage is not None and second.usage.image_input_tokens > 0


async def test_forgotten_parent_falls_back_to_sending_the_parent_image(
    fake: FakeOpenAI, make_background: MakeProvider
) -> None:
    provider = make_background()
    first = await provider.create(job(), ignore_partials)
    fake.forget_responses()
    parent = ParentImage(image=first.image, response_id=first.response_id)

    second = await provider.create(job("make it night", parent=parent), ignore_partials)

    calls = fake.calls_to("POST /v1/responses")
    assert len(calls) == 3
    assert calls[1].params["previous_response_id"] == "resp_fake_1"
    assert "previous_response_id" not in calls[2].params
    assert fake.input_images(calls[2]) == [first.image]  # exactly the parent's bytes
    image_part = calls[2].params["input"][0]["content"][1]
    assert image_part["image_url"].startswith("data:image/png;base64,")
    assert calls[2].params["input"][0]["content"][0] == {"type": "input_text", "text": "make it night"}
    assert pixel(second.image) == color(2)
    assert fake.billed == 2


async def test_forgotten_parent_without_cached_image_says_it_expired(
    fake: FakeOpenAI, make_background: MakeProvider
) -> None:
    parent = ParentImage(image=None, response_id="resp_gone")

    with pytest.raises(UnknownRound) as caught:
        await make_background().create(job("make it night", parent=parent), ignore_partials)

    assert "expired" in caught.value.message
    assert_clean(caught.value.message)
    assert len(fake.calls_to("POST /v1/responses")) == 1
    assert fake.billed == 0


async def test_parent_without_response_id_is_sent_as_an_image(
    fake: FakeOpenAI, make_responses: MakeProvider
) -> None:
    parent_bytes = png(24, (10, 200, 30))
    parent = ParentImage(image=parent_bytes, response_id=None)

    await make_responses().create(job("add a hat", parent=parent), ignore_partials)

    call = fake.calls_to("POST /v1/responses")[0]
    assert "previous_response_id" not in call.params
    assert fake.input_images(call) == [parent_bytes]


async def test_user_photos_go_as_input_image_data_urls(
    fake: FakeOpenAI, make_responses: MakeProvider
) -> None:
    photo = png(20, (1, 2, 3))

    await make_responses().create(job("put this cat on the moon", inputs=(photo,)), ignore_partials)

    call = fake.calls_to("POST /v1/responses")[0]
    assert fake.input_images(call) == [photo]
    part = call.params["input"][0]["content"][1]
    assert part["type"] == "input_image"
    assert part["image_url"].startswith("data:image/png;base64,")


async def test_missing_usage_is_tolerated(fake: FakeOpenAI, make_responses: MakeProvider) -> None:
    fake.report_usage = False

    streamed = await make_responses().create(job(), ignore_partials)
    plain = await make_responses(partial_images=0).create(job(), ignore_partials)

    assert streamed.usage is None and plain.usage is None
    assert pixel(plain.image) == color(2)


async def test_large_inputs_are_shrunk_before_upload(fake: FakeOpenAI, make_responses: MakeProvider) -> None:
    noise = Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    photo = buffer.getvalue()
    assert len(photo) > 100_000

    await make_responses(max_upload_bytes=60_000).create(job(inputs=(photo,)), ignore_partials)

    call = fake.calls_to("POST /v1/responses")[0]
    url = call.params["input"][0]["content"][1]["image_url"]
    assert url.startswith("data:image/jpeg;base64,")
    (sent,) = fake.input_images(call)
    assert len(sent) <= 60_000


async def test_without_background_mode_nothing_is_stored_and_an_edit_sends_its_parent(
    fake: FakeOpenAI, make_responses: MakeProvider
) -> None:
    """Background mode off is for zero data retention: every request says `store: false`, so an edit cannot
    continue from a stored response and sends its parent image instead."""
    provider = make_responses()
    first = await provider.create(job(), ignore_partials)
    parent = ParentImage(image=first.image, response_id=first.response_id)
    await provider.create(job("make it night", parent=parent), ignore_partials)
    calls = fake.calls_to("POST /v1/responses")
    assert [c.params.get("store") for c in calls] == [False, False]
    assert "previous_response_id" not in calls[1].params
    parts = calls[1].params["input"][0]["content"]
    assert [part["type"] for part in parts] == ["input_text", "input_image"]
