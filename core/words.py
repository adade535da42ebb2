"""Phrases the services build from the catalog: captions, prompt snippets, credit answers."""

from __future__ import annotations

from core.records import FORGOTTEN_PROMPT, Round
from core.spec import Shape
from core.texts import say

MAX_CAPTION_PROMPT = 180
FORGOTTEN = FORGOTTEN_PROMPT  # a reroll of such a round is refused, not sent as this text


def snippet(text: str, limit: int = MAX_CAPTION_PROMPT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def credits_left(lang: str, left: int) -> str:
    return say(lang, "credits.left", count=left)


def caption(lang: str, item: Round, left: int, parent_number: int | None, model: str) -> str:
    parts = [say(lang, "caption.number", number=item.number)]
    if parent_number is not None:
        parts[0] = say(lang, "caption.number_from", number=item.number, parent=parent_number)
    parts.append(snippet(item.prompt))
    if item.cost > 1:
        parts.append(say(lang, "caption.cost", count=item.cost))
    if item.spec.approximated(model):
        shape = say(lang, f"shape.{item.spec.shape.value}")
        nearest = say(lang, f"shape.{_nearest(item.spec.shape).value}")
        parts.append(say(lang, "caption.nearest_shape", shape=shape, nearest=nearest))
    parts.append(credits_left(lang, left))
    return " · ".join(parts)


def _nearest(shape: Shape) -> Shape:
    return {Shape.WIDE: Shape.LANDSCAPE, Shape.TALL: Shape.PORTRAIT}.get(shape, shape)


__all__ = ["FORGOTTEN", "caption", "credits_left", "say", "snippet"]
