"""Estimated spend per round, from the provider's reported usage and the price table (`EASEL_PRICES`).

When the provider reports no usage (the Responses route may omit `tool_usage`), the image's output tokens
are estimated from its size and quality with the published GPT-Image token counts."""

from __future__ import annotations

from collections.abc import Mapping

from core.events import Quality, Size
from core.images import Usage

# Output tokens of one square image by quality; portrait and landscape cost about 1.5x.
_SQUARE_TOKENS = {Quality.LOW: 272, Quality.MEDIUM: 1056, Quality.HIGH: 4160}


def estimated_usage(size: Size, quality: Quality) -> Usage:
    tokens = _SQUARE_TOKENS[quality]
    if size is not Size.SQUARE:
        tokens = tokens * 3 // 2
    return Usage(image_output_tokens=tokens)


def estimate_usd(usage: Usage, prices: Mapping[str, float]) -> float:
    text = usage.text_input_tokens + usage.host_input_tokens + usage.host_output_tokens
    total = (
        text * prices["text_in"]
        + usage.image_input_tokens * prices["image_in"]
        + usage.image_output_tokens * prices["image_out"]
    )
    return round(total / 1_000_000, 6)
