"""Image options reaching the provider on both routes: every shape and quality as `size`/`quality`, the
background and output format, several reference images (Responses: `input_image` parts; Images: the edit
endpoint's image list, parent first), transparency kept in the result's alpha, a model that refuses it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from core.errors import ProviderRejected
from core.ports import ImageJob, ParentImage
from core.provider.images_api import ImagesProvider
from core.provider.responses import ResponsesProvider
from core.spec import Background, ImageSpec, Quality, Shape
from tests.fakes.fake_openai import FakeOpenAI, alphas, png
from tests.provider.support import assert_clean, ignore_partials

Provider = ResponsesProvider | ImagesProvider
ROUTES = ["responses", "background", "images"]


@pytest.fixture(params=ROUTES)
def route(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(route: str, make_responses: Callable[..., Provider], make_background: Callable[..., Provider],
         make_images: Callable[..., Provider]) -> Callable[..., Provider]:
    return {"responses": make_responses, "background": make_background, "images": make_images}[route]


def spec_job(spec: ImageSpec, *, model: str = "gpt-image-2", **fields: Any) -> ImageJob:
    return ImageJob(prompt="a poster", params=spec.provider_params(model), safety_id="user-hash", **fields)


def sent(fake: FakeOpenAI, route: str) -> dict[str, Any]:
    """The image parameters as the provider received them (the tool on Responses, the body on Images)."""
    if route == "images":
        call = (fake.calls_to("POST /v1/images/generations") or fake.calls_to("POST /v1/images/edits"))[-1]
        return call.params
    tool: dict[str, Any] = fake.calls_to("POST /v1/responses")[-1].params["tools"][0]
    return tool


@pytest.mark.parametrize("shape", list(Shape))
@pytest.mark.parametrize("quality", list(Quality))
async def test_every_shape_and_quality_reaches_the_provider(
    fake: FakeOpenAI, make: Callable[..., Provider], route: str, shape: Shape, quality: Quality
) -> None:
    spec = ImageSpec(shape=shape, quality=quality)

    await make(partial_images=0).create(spec_job(spec), ignore_partials)

    params = sent(fake, route)
    assert params["size"] == spec.size_for("gpt-image-2")
    assert params["quality"] == quality.value
    assert "background" not in params  # auto is the provider's default: not sent
    assert params["output_format"] == "png"


async def test_classic_models_get_the_nearest_classic_size(
    fake: FakeOpenAI, make: Callable[..., Provider], route: str
) -> None:
    spec = ImageSpec(shape=Shape.WIDE)

    await make(partial_images=0, image_model="gpt-image-1.5").create(
        spec_job(spec, model="gpt-image-1.5"), ignore_partials)

    assert sent(fake, route)["size"] == "1536x1024"


@pytest.mark.parametrize("background", [Background.OPAQUE, Background.TRANSPARENT])
async def test_background_and_output_format_reach_the_provider(
    fake: FakeOpenAI, make: Callable[..., Provider], route: str, background: Background
) -> None:
    result = await make().create(spec_job(ImageSpec(background=background)), ignore_partials)

    params = sent(fake, route)
    assert params["background"] == background.value
    assert params["output_format"] == "png"
    if background is Background.TRANSPARENT:
        assert alphas(result.image) == (0, 255)  # the alpha survives decoding, byte for byte
    else:
        assert alphas(result.image) is None


@pytest.mark.parametrize("count", [2, 4])
async def test_reference_images_go_as_input_images_in_order(
    fake: FakeOpenAI, make_background: Callable[..., Provider], count: int
) -> None:
    references = tuple(png(16, (index, 2, 3)) for index in range(count))

    await make_background().create(spec_job(ImageSpec(references=count), inputs=references), ignore_partials)

    call = fake.calls_to("POST /v1/responses")[0]
    assert fake.input_images(call) == list(references)
    content = call.params["input"][0]["content"]
    assert [part["type"] for part in content] == ["input_text"] + ["input_image"] * count


async def test_parent_and_reference_images_go_as_the_edit_image_list(
    fake: FakeOpenAI, make_images: Callable[..., Provider]
) -> None:
    parent = png(16, (9, 9, 9))
    references = tuple(png(16, (index, 5, 5)) for index in range(4))

    await make_images().create(spec_job(ImageSpec(references=4), parent=ParentImage(image=parent),
                                        inputs=references), ignore_partials)

    call = fake.calls_to("POST /v1/images/edits")[0]
    uploads = call.params["_uploads"]
    assert [u["field"] for u in uploads] == ["image[]"] * 5
    assert [u["filename"] for u in uploads] == [f"image-{n}.png" for n in range(1, 6)]
    sent_files = [call.files["image[]"]] + [call.files[f"image[]#{n}"] for n in range(1, 5)]
    assert sent_files == [parent, *references]


async def test_two_references_without_a_parent_on_the_images_route(
    fake: FakeOpenAI, make_images: Callable[..., Provider]
) -> None:
    references = (png(16, (1, 1, 1)), png(16, (2, 2, 2)))

    await make_images(partial_images=0).create(spec_job(ImageSpec(references=2), inputs=references),
                                               ignore_partials)

    assert fake.calls_to("POST /v1/images/generations") == []
    assert [u["field"] for u in fake.calls_to("POST /v1/images/edits")[0].params["_uploads"]] == ["image[]"] * 2


async def test_a_model_that_refuses_transparency_says_so(
    fake: FakeOpenAI, make: Callable[..., Provider]
) -> None:
    fake.refuse_transparency = {"gpt-image-2"}

    with pytest.raises(ProviderRejected) as caught:
        await make().create(spec_job(ImageSpec(background=Background.TRANSPARENT)), ignore_partials)

    assert caught.value.msg_id == "provider.no_transparency"
    assert_clean(caught.value.message)


async def test_the_job_model_overrides_the_configured_one(
    fake: FakeOpenAI, make: Callable[..., Provider], route: str
) -> None:
    fake.refuse_transparency = {"gpt-image-2"}
    job = spec_job(ImageSpec(background=Background.TRANSPARENT), model="gpt-image-1.5")

    result = await make().create(replace(job, model="gpt-image-1.5"), ignore_partials)

    assert sent(fake, route)["model"] == "gpt-image-1.5"
    assert alphas(result.image) == (0, 255)


async def test_sample_bodies_for_a_wide_transparent_round_with_two_references(
    fake: FakeOpenAI, make_background: Callable[..., Provider], make_images: Callable[..., Provider]
) -> None:
    spec = ImageSpec(shape=Shape.WIDE, background=Background.TRANSPARENT, references=2)
    references = (png(16, (1, 1, 1)), png(16, (2, 2, 2)))

    await make_background().create(spec_job(spec, inputs=references), ignore_partials)
    await make_images().create(spec_job(spec, inputs=references), ignore_partials)

    body = fake.calls_to("POST /v1/responses")[0].params
    assert body["background"] is True and body["stream"] is True
    assert body["tools"] == [{"type": "image_generation", "model": "gpt-image-2", "size": "1536x864",
                              "quality": "medium", "background": "transparent", "output_format": "png",
                              "partial_images": 2}]
    assert [p["type"] for p in body["input"][0]["content"]] == ["input_text", "input_image", "input_image"]
    form = fake.calls_to("POST /v1/images/edits")[0].params
    assert {k: form[k] for k in ("size", "quality", "background", "output_format")} == {
        "size": "1536x864", "quality": "medium", "background": "transparent", "output_format": "png"}
    assert [u["field"] for u in form["_uploads"]] == ["image[]", "image[]"]
