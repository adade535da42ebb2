"""ImageSpec: cost, provider parameters and the stored value, derived in one place."""

from __future__ import annotations

import itertools

from core.spec import DEFAULT_COSTS, Background, ImageSpec, Quality, Shape, SpecOptions


def test_every_spec_survives_its_stored_value() -> None:
    for shape, quality, background, refs in itertools.product(Shape, Quality, Background, range(5)):
        spec = ImageSpec(shape, quality, background, refs)
        assert ImageSpec.from_json(spec.to_json()) == spec


def test_a_stored_value_from_a_newer_or_older_easel_still_reads() -> None:
    assert ImageSpec.from_json('{"shape": "tall", "an_option_from_the_future": 3}') == ImageSpec(shape=Shape.TALL)
    assert ImageSpec.from_json("{}") == ImageSpec()


def test_costs_follow_the_documented_table() -> None:
    assert ImageSpec().cost(DEFAULT_COSTS) == 1
    assert ImageSpec(Shape.WIDE, Quality.HIGH).cost(DEFAULT_COSTS) == 6
    assert ImageSpec(Shape.TALL, Quality.MEDIUM).cost(DEFAULT_COSTS) == 2
    assert ImageSpec(references=2).cost(DEFAULT_COSTS) == 1  # two references are included
    assert ImageSpec(references=4).cost(DEFAULT_COSTS) == 3  # each further one costs a credit


def test_provider_parameters_per_model() -> None:
    wide = ImageSpec(Shape.WIDE, Quality.HIGH, Background.TRANSPARENT)
    assert wide.provider_params("gpt-image-2") == {
        "size": "1536x864", "quality": "high", "background": "transparent", "output_format": "png",
    }
    assert not wide.approximated("gpt-image-2")
    assert wide.provider_params("gpt-image-1")["size"] == "1536x1024" and wide.approximated("gpt-image-1")
    assert "background" not in ImageSpec().provider_params("gpt-image-2")  # auto is the provider's default


def test_an_edit_keeps_its_parents_options_unless_it_sets_new_ones() -> None:
    parent = ImageSpec(Shape.WIDE, Quality.HIGH, Background.TRANSPARENT)
    assert SpecOptions().resolve(parent) == parent
    lower = ImageSpec(Shape.WIDE, Quality.LOW, Background.TRANSPARENT)
    assert SpecOptions(quality=Quality.LOW).resolve(parent) == lower
    assert SpecOptions().resolve(None) == ImageSpec()
