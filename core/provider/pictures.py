"""Pillow helpers for images that come from chat or go to the provider. Pure, blocking functions: the studio
calls them through `asyncio.to_thread`.

Untrusted input is opened only with the four formats Easel accepts, measured from its header before any
pixel is decoded, and re-encoded so that nothing but pixels (and a matching colour profile) survives.
"""

from __future__ import annotations

import io
import math
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import BadInputImage

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
# Header sniffing for a clear "unsupported format" message, without handing the bytes to other decoders.
_KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop"),
    (b"\x00\x00\x01\x00", "ICO"),
)
_JPEG_QUALITIES = (90, 80, 70, 60, 50)
_MIN_SIDE = 64


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{math.ceil(size / 1000)} KB"


def _sniff_other_format(head: bytes) -> str | None:
    for magic, name in _KNOWN_OTHERS:
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return "video"
    text = head.lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    return None


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) with the allowed formats; refuse anything too large to decode."""
    try:
        # Pillow warns, then raises, on images past its own pixel limit: both mean "too large" here.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise BadInputImage("provider.input.too_many_pixels", limit=max_pixels) from None
    except UnidentifiedImageError:
        other = _sniff_other_format(data[:512])
        if other is not None:
            raise BadInputImage("provider.input.unsupported", kind=other) from None
        raise BadInputImage("provider.input.unreadable") from None
    except (OSError, SyntaxError, ValueError):
        raise BadInputImage("provider.input.damaged") from None
    width, height = image.size
    if width <= 0 or height <= 0 or width * height > max_pixels:
        image.close()
        raise BadInputImage("provider.input.too_large_pixels", width=width, height=height, limit=max_pixels)
    return image


def _normalised_mode(image: Image.Image) -> str:
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    return "RGBA" if has_alpha else "RGB"


def validate_input(data: bytes, *, max_bytes: int, max_pixels: int) -> tuple[bytes, int, int]:
    """Decode an untrusted image under limits and return (PNG bytes, width, height).

    Only the first frame is kept, EXIF orientation is applied and then all metadata is dropped; the mode
    becomes RGB or RGBA. Raises `BadInputImage` with a message that says what was wrong."""
    if len(data) > max_bytes:
        raise BadInputImage("provider.input.too_large_bytes", size=_mb(len(data)), limit=_mb(max_bytes))
    if not data:
        raise BadInputImage("provider.input.empty")
    image = _open(data, max_pixels)
    try:
        image.seek(0)
        image.load()
        mode = _normalised_mode(image)
        upright = ImageOps.exif_transpose(image) or image
        # CMYK, palette, 16-bit and friends all become plain 8-bit RGB(A).
        pixels = upright if upright.mode == mode else upright.convert(mode)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise BadInputImage("provider.input.too_many_pixels", limit=max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        # Pillow reports a cut-off file as OSError("image file is truncated ...").
        raise BadInputImage("provider.input.incomplete") from None
    finally:
        image.close()
    icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA") else None
    pixels.info = {}
    out = io.BytesIO()
    if icc:
        pixels.save(out, format="PNG", compress_level=4, icc_profile=icc)
    else:
        pixels.save(out, format="PNG", compress_level=4)
    return out.getvalue(), pixels.width, pixels.height


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the header (allowed formats only)."""
    try:
        with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise BadInputImage("provider.input.unreadable") from None


def extension_for(mime: str) -> str:
    return EXTENSIONS.get(mime, "png")


def _flatten(image: Image.Image) -> Image.Image:
    """JPEG has no alpha: put transparent pixels on white rather than black."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image if image.mode == "RGB" else image.convert("RGB")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, optimize=False)
    return out.getvalue()


def fit_for_upload(
    data: bytes, mime: str, *, max_bytes: int, max_side_sum: int | None = None
) -> tuple[bytes, str, str]:
    """Return (bytes, mime, file extension) that fit the provider's upload limits.

    Unchanged when the image already fits; otherwise re-encoded as JPEG at decreasing quality, then scaled
    down, until it does. Raises `BadInputImage` if even a small JPEG would not fit."""
    if len(data) <= max_bytes and max_side_sum is None:
        return data, mime, extension_for(mime)
    if len(data) <= max_bytes and max_side_sum is not None and sum(image_size(data)) <= max_side_sum:
        return data, mime, extension_for(mime)
    try:
        with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as opened:
            opened.seek(0)
            frame = opened.copy()  # decodes now, while the file is open
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise BadInputImage("provider.input.unreadable") from None
    image = _flatten(frame)
    if max_side_sum is not None and image.width + image.height > max_side_sum:
        scale = max_side_sum / (image.width + image.height)
        image = image.resize(_scaled(image.size, scale), Image.Resampling.LANCZOS)
    for quality in _JPEG_QUALITIES:
        encoded = _jpeg(image, quality)
        if len(encoded) <= max_bytes:
            return encoded, "image/jpeg", "jpg"
    while min(image.size) > _MIN_SIDE:
        image = image.resize(_scaled(image.size, 0.7), Image.Resampling.LANCZOS)
        encoded = _jpeg(image, 80)
        if len(encoded) <= max_bytes:
            return encoded, "image/jpeg", "jpg"
    raise BadInputImage("provider.input.cannot_shrink")


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, int(size[0] * scale)), max(1, int(size[1] * scale))
