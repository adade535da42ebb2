"""ImageSpec: what one image should look like, with its credit cost and provider parameters derived here.

Adding an option means touching this module (the field, its cost, its provider parameter, its row mapping),
the adapters' option parsing and the docs; nothing in between passes options around one by one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum


class Shape(StrEnum):
    SQUARE = "square"
    PORTRAIT = "portrait"
    LANDSCAPE = "landscape"
    WIDE = "wide"  # 16:9
    TALL = "tall"  # 9:16


class Quality(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Background(StrEnum):
    AUTO = "auto"
    OPAQUE = "opaque"
    TRANSPARENT = "transparent"


MAX_REFERENCES = 4

# Sizes GPT-Image 2 accepts (sides multiples of 16, ratio up to 3:1), and what the older models accept.
FLEXIBLE_SIZES: dict[Shape, str] = {
    Shape.SQUARE: "1024x1024",
    Shape.PORTRAIT: "1024x1536",
    Shape.LANDSCAPE: "1536x1024",
    Shape.WIDE: "1536x864",
    Shape.TALL: "864x1536",
}
CLASSIC_SIZES: dict[Shape, str] = {
    Shape.SQUARE: "1024x1024",
    Shape.PORTRAIT: "1024x1536",
    Shape.LANDSCAPE: "1536x1024",
    Shape.WIDE: "1536x1024",  # nearest classic size; the caption says so
    Shape.TALL: "1024x1536",
}
# Models that take only the three classic sizes.
CLASSIC_MODELS = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "dall-e")

# Credits per image by shape and quality: 1 at the default (square, medium); larger and higher quality cost
# more, roughly in proportion to the provider's price. Wide and tall cost what landscape and portrait do.
DEFAULT_COSTS: dict[tuple[Shape, Quality], int] = {
    (Shape.SQUARE, Quality.LOW): 1,
    (Shape.SQUARE, Quality.MEDIUM): 1,
    (Shape.SQUARE, Quality.HIGH): 4,
    (Shape.PORTRAIT, Quality.LOW): 1,
    (Shape.PORTRAIT, Quality.MEDIUM): 2,
    (Shape.PORTRAIT, Quality.HIGH): 6,
    (Shape.LANDSCAPE, Quality.LOW): 1,
    (Shape.LANDSCAPE, Quality.MEDIUM): 2,
    (Shape.LANDSCAPE, Quality.HIGH): 6,
    (Shape.WIDE, Quality.LOW): 1,
    (Shape.WIDE, Quality.MEDIUM): 2,
    (Shape.WIDE, Quality.HIGH): 6,
    (Shape.TALL, Quality.LOW): 1,
    (Shape.TALL, Quality.MEDIUM): 2,
    (Shape.TALL, Quality.HIGH): 6,
}
# Reference images are billed by the provider as image input tokens (about a quarter of an output image
# each at medium quality): the first two are included, each further one costs a credit.
FREE_REFERENCES = 2
REFERENCE_COST = 1

CostTable = Mapping[tuple[Shape, Quality], int]


def uses_classic_sizes(model: str) -> bool:
    return model.startswith(CLASSIC_MODELS)


@dataclass(frozen=True, slots=True)
class ImageSpec:
    shape: Shape = Shape.SQUARE
    quality: Quality = Quality.MEDIUM
    background: Background = Background.AUTO
    references: int = 0  # input images sent with the prompt (not counting the parent of an edit)

    def cost(self, table: CostTable) -> int:
        extra = max(0, self.references - FREE_REFERENCES) * REFERENCE_COST
        return table[(self.shape, self.quality)] + extra

    def size_for(self, model: str) -> str:
        return (CLASSIC_SIZES if uses_classic_sizes(model) else FLEXIBLE_SIZES)[self.shape]

    def approximated(self, model: str) -> bool:
        """True when the model cannot make this shape exactly and the nearest size is used instead."""
        return self.size_for(model) != FLEXIBLE_SIZES[self.shape]

    def provider_params(self, model: str) -> dict[str, str]:
        """The image tool's (or Images API's) parameters for this spec."""
        params = {"size": self.size_for(model), "quality": self.quality.value}
        if self.background is not Background.AUTO:
            params["background"] = self.background.value
        if self.background is Background.TRANSPARENT:
            params["output_format"] = "png"  # the only lossless format that keeps alpha
        return params

    def to_row(self) -> dict[str, str | int]:
        return {
            "size": self.shape.value,
            "quality": self.quality.value,
            "background": self.background.value,
            "refs": self.references,
        }

    def to_json(self) -> str:
        """The whole spec as one stored value: a new option needs no new column."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ImageSpec:
        """Unknown keys (a newer Easel's options) are ignored; missing ones take their defaults."""
        stored = json.loads(text)
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for name, value in stored.items():
            if name not in known:
                continue
            default = getattr(cls(), name)
            values[name] = type(default)(value)
        return cls(**values)  # type: ignore[arg-type]  # each value was cast to its field's own type

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> ImageSpec:
        return cls(
            shape=Shape(str(row["size"])),
            quality=Quality(str(row["quality"])),
            background=Background(str(row.get("background") or Background.AUTO.value)),
            references=int(str(row.get("refs") or 0)),
        )


@dataclass(frozen=True, slots=True)
class SpecOptions:
    """What a request set explicitly; None keeps the parent's value (an edit round) or the default."""

    shape: Shape | None = None
    quality: Quality | None = None
    background: Background | None = None

    def resolve(self, base: ImageSpec | None, references: int = 0) -> ImageSpec:
        spec = base or ImageSpec()
        return replace(
            spec,
            shape=self.shape or spec.shape,
            quality=self.quality or spec.quality,
            background=self.background or spec.background,
            references=references,
        )
