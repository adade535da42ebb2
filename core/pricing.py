"""Estimated spend per round, from the provider's reported usage and the price table (`EASEL_PRICES`).

When the provider reports no usage (the Responses route may omit `tool_usage`), the image's tokens are
estimated from its spec with the published GPT-Image token counts."""

from __future__ import annotations

from collections.abc import Mapping

from core.ports import Usage
from core.spec import ImageSpec, Quality, Shape

# Output tokens of one square image by quality; every other shape (portrait, landscape, wide, tall) has
# about 1.5 times the pixels and costs about 1.5 times as much.
_SQUARE_TOKENS = {Quality.LOW: 272, Quality.MEDIUM: 1056, Quality.HIGH: 4160}
# Input tokens of one reference image: the provider bills inputs as image tokens, about a quarter of a
# medium output image at the input price.
_REFERENCE_TOKENS = 1000


def estimated_usage(spec: ImageSpec) -> Usage:
    tokens = _SQUARE_TOKENS[spec.quality]
    if spec.shape is not Shape.SQUARE:
        tokens = tokens * 3 // 2
    return Usage(image_output_tokens=tokens, image_input_tokens=spec.references * _REFERENCE_TOKENS)


def estimate_usd(usage: Usage, prices: Mapping[str, float]) -> float:
    text = usage.text_input_tokens + usage.host_input_tokens + usage.host_output_tokens
    total = (
        text * prices["text_in"]
        + usage.image_input_tokens * prices["image_in"]
        + usage.image_output_tokens * prices["image_out"]
    )
    return round(total / 1_000_000, 6)
