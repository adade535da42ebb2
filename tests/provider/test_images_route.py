"""The Images API route against the fake: generate, edit with the parent and photos uploaded as labelled
files, streaming partials, usage."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image

from core.errors import ResponseGone, UnknownRound
from core.ports import ParentImage, Usage
from core.provider.images_api import ImagesProvider
from tests.fakes.fake_openai import FakeOpenAI, color, pixel, png
from tests.provider.support import Partials, assert_clean, ignore_partials, job

MakeProvider = Callable[..., ImagesProvider]


async def test_generate_streams_partials_and_reads_usage_from_completed(
    fake: FakeOpenAI, make_images: MakeProvider, partials: Partials
) -> None:
    result = await make_images().create(job(size="1536x1024", quality="high"), partials)

    assert pixel(result.image) == color(1)
    assert [index for index, _ in partials.got] == [0, 1]
    assert result.usage == Usage(text_input_tokens=28, image_input_tokens=0, image_output_tokens=272)
    assert result.request_id == "req_fake_1"
    assert result.response_id is None
    body = fake.calls_to("POST /v1/images/generations")[0].params
    assert body == {
        "prompt": "a red fox in the snow", "model": "gpt-image-2", "size": "1536x1024", "quality": "high",
        "output_format": "png", "n": 1, "safety_identifier": "user-hash", "stream": True, "partial_images": 2,
    }


async def test_generate_without_partials_reads_the_json_answer(
    fake: FakeOpenAI, make_images: MakeProvider, partials: Partials
) -> None:
    result = await make_images(partial_images=0).create(job(), partials)

    assert pixel(result.image) == color(1)
    assert partials.got == []
    assert result.usage is not None and result.usage.image_output_tokens == 272
    assert "stream" not in fake.calls_to("POST /v1/images/generations")[0].params


async def test_edit_uploads_the_parent_as_a_labelled_png(
    fake: FakeOpenAI, make_images: MakeProvider, partials: Partials
) -> None:
    parent_bytes = png(24, (9, 9, 9))
    parent = ParentImage(image=parent_bytes, response_id="resp_ignored_here")

    result = await make_images().create(job("make it night", parent=parent), partials)

    call = fake.calls_to("POST /v1/images/edits")[0]
    assert call.params["_uploads"] == [
        {"field": "image", "filename": "image-1.png", "content_type": "image/png", "size": len(parent_bytes)}
    ]
    assert call.files["image"] == parent_bytes
    assert call.params["prompt"] == "make it night"
    assert call.params["model"] == "gpt-image-2"
    assert call.params["stream"] == "true"
    assert call.params["partial_images"] == "2"
    assert [index for index, _ in partials.got] == [0, 1]
    assert pixel(result.image) == color(1)
    assert result.usage is not None and result.usage.image_input_tokens == 200


async def test_edit_with_parent_and_photo_sends_both_as_image_list(
    fake: FakeOpenAI, make_images: MakeProvider
) -> None:
    parent = ParentImage(image=png(16, (1, 1, 1)), mime="image/png")
    photo = png(16, (2, 2, 2))

    await make_images(partial_images=0).create(job("combine", parent=parent, inputs=(photo,)), ignore_partials)

    call = fake.calls_to("POST /v1/images/edits")[0]
    uploads = call.params["_uploads"]
    assert [u["field"] for u in uploads] == ["image[]", "image[]"]
    assert [u["filename"] for u in uploads] == ["image-1.png", "image-2.png"]
    assert {u["content_type"] for u in uploads} == {"image/png"}
    assert call.files["image[]"] == parent.image
    assert call.files["image[]#1"] == photo


async def test_jpeg_parent_keeps_its_type_and_extension(fake: FakeOpenAI, make_images: MakeProvider) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (5, 6, 7)).save(buffer, format="JPEG")
    parent = ParentImage(image=buffer.getvalue(), mime="image/jpeg")

    await make_images().create(job("brighter", parent=parent), ignore_partials)

    (upload,) = fake.calls_to("POST /v1/images/edits")[0].params["_uploads"]
    assert (upload["filename"], upload["content_type"]) == ("image-1.jpg", "image/jpeg")


async def test_user_photo_alone_is_an_edit(fake: FakeOpenAI, make_images: MakeProvider) -> None:
    photo = png(16, (3, 3, 3))

    await make_images().create(job("a hat", inputs=(photo,)), ignore_partials)

    assert fake.calls_to("POST /v1/images/generations") == []
    call = fake.calls_to("POST /v1/images/edits")[0]
    assert call.files["image"] == photo


async def test_expired_parent_image_is_refused_without_a_call(
    fake: FakeOpenAI, make_images: MakeProvider
) -> None:
    with pytest.raises(UnknownRound) as caught:
        await make_images().create(job(parent=ParentImage(image=None, response_id="resp_1")), ignore_partials)

    assert "expired" in caught.value.message
    assert_clean(caught.value.message)
    assert fake.calls == []


async def test_the_images_route_has_no_background_mode(fake: FakeOpenAI, make_images: MakeProvider) -> None:
    provider = make_images()

    assert provider.background is False
    with pytest.raises(ResponseGone):
        await provider.resume("resp_1", 3, ignore_partials)
    await provider.cancel("resp_1")  # nothing to call: the service abandons the request
    assert fake.calls == []
