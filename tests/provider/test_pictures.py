"""Pillow helpers: untrusted inputs are refused with a clear message or normalised, quickly; uploads are
shrunk only when they do not fit."""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib

import pytest
from PIL import Image

from core.errors import BadInputImage
from core.provider.pictures import fit_for_upload, image_size, validate_input

MB = 1_000_000
LIMITS = {"max_bytes": 20 * MB, "max_pixels": 40 * MB}


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def noise(width: int, height: int) -> Image.Image:
    return Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))


def declared_png(width: int, height: int) -> bytes:
    """A tiny file whose header claims a huge image: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def refused(data: bytes, **limits: int) -> str:
    started = time.monotonic()
    with pytest.raises(BadInputImage) as caught:
        validate_input(data, **{**LIMITS, **limits})
    assert time.monotonic() - started < 1.0
    message = caught.value.message
    assert "Error" not in message and "PIL" not in message and "\n" not in message
    return message


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


# ---- validate_input: refusals --------------------------------------------------------------------------


def test_byte_cap_is_checked_before_anything_else() -> None:
    assert "too large" in refused(b"not even an image" * 100, max_bytes=1024)


def test_empty_file() -> None:
    assert "empty" in refused(b"")


@pytest.mark.parametrize("size", [(20000, 20000), (10000, 10000)])
def test_decompression_bombs_are_refused_from_the_header(size: tuple[int, int]) -> None:
    # 400 Mpx trips Pillow's hard limit; 100 Mpx only its warning, which must count as a refusal too even
    # where warnings are not errors (they are under pytest).
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        message = refused(declared_png(*size), max_pixels=178 * MB)
    assert "too many pixels" in message


def test_more_pixels_than_the_setting_allows() -> None:
    message = refused(declared_png(8000, 8000))
    assert "too large" in message and "8000×8000" in message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(fmt: str) -> None:
    whole = encode(noise(120, 120), fmt)
    assert "incomplete" in refused(whole[: len(whole) * 2 // 3])


def test_html_renamed_to_png() -> None:
    page = b"<!DOCTYPE html><html><head><title>x</title></head><body>hello</body></html>"
    assert "isn't an image" in refused(page)


def test_svg_is_not_supported() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    message = refused(svg)
    assert message.startswith("SVG files aren't supported") and "PNG, JPEG, WEBP or GIF" in message


@pytest.mark.parametrize(("fmt", "name"), [("TIFF", "TIFF"), ("BMP", "BMP")])
def test_other_real_formats_are_named(fmt: str, name: str) -> None:
    assert refused(encode(Image.new("RGB", (8, 8)), fmt)).startswith(f"{name} files aren't supported")


# ---- validate_input: normalisation -------------------------------------------------------------------


def test_png_round_trip_keeps_pixels() -> None:
    source = Image.new("RGB", (30, 20), (10, 20, 30))
    data, width, height = validate_input(encode(source, "PNG"), **LIMITS)
    assert (width, height) == (30, 20)
    assert decoded(data).getpixel((0, 0)) == (10, 20, 30)


def test_exif_orientation_is_applied_and_metadata_stripped() -> None:
    source = Image.new("RGB", (40, 20), (255, 0, 0))
    source.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    exif[0x010F] = "SecretCamMaker"
    data, width, height = validate_input(encode(source, "JPEG", exif=exif.tobytes(), quality=95), **LIMITS)

    assert (width, height) == (20, 40)
    image = decoded(data).convert("RGB")
    top = image.getpixel((10, 5))
    bottom = image.getpixel((10, 35))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # the left (red) side is now on top
    assert bottom[2] > 200 and bottom[0] < 60
    assert b"SecretCamMaker" not in data and b"eXIf" not in data
    assert not decoded(data).getexif()


def test_cmyk_jpeg_becomes_rgb() -> None:
    data, _, _ = validate_input(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"), **LIMITS)
    image = decoded(data)
    assert image.mode == "RGB"
    red = image.getpixel((8, 8))
    assert isinstance(red, tuple) and red[0] > 200 and red[1] < 60


def test_animated_gif_keeps_the_first_frame_only() -> None:
    frames = [Image.new("RGB", (12, 12), rgb) for rgb in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    data, _, _ = validate_input(gif, **LIMITS)
    image = decoded(data)
    assert getattr(image, "n_frames", 1) == 1
    assert image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)


def test_transparency_is_kept_as_rgba() -> None:
    palette = Image.new("P", (8, 8), 0)
    palette.info["transparency"] = 0
    data, _, _ = validate_input(encode(palette, "PNG", transparency=0), **LIMITS)
    assert decoded(data).mode == "RGBA"
    rgba, _, _ = validate_input(encode(Image.new("RGBA", (8, 8), (1, 2, 3, 4)), "PNG"), **LIMITS)
    assert decoded(rgba).getpixel((0, 0)) == (1, 2, 3, 4)


def test_sixteen_bit_grey_becomes_rgb() -> None:
    data, _, _ = validate_input(encode(Image.new("I;16", (8, 8), 300), "PNG"), **LIMITS)
    assert decoded(data).mode == "RGB"


def test_webp_is_accepted() -> None:
    data, width, height = validate_input(encode(Image.new("RGB", (9, 7), (0, 128, 0)), "WEBP"), **LIMITS)
    assert (width, height) == (9, 7)
    assert decoded(data).mode == "RGB"


# ---- image_size and fit_for_upload ---------------------------------------------------------------------


def test_image_size_reads_the_header() -> None:
    assert image_size(encode(Image.new("RGB", (33, 44)), "PNG")) == (33, 44)
    with pytest.raises(BadInputImage):
        image_size(b"<html></html>")


def test_small_upload_is_returned_unchanged() -> None:
    data = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    assert fit_for_upload(data, "image/png", max_bytes=10 * MB) == (data, "image/png", "png")
    assert fit_for_upload(data, "image/png", max_bytes=10 * MB, max_side_sum=200) == (data, "image/png", "png")


def test_4k_noise_png_is_shrunk_under_10_mib() -> None:
    cap = 10 * 1024 * 1024
    source = encode(noise(3840, 2160), "PNG", compress_level=0)
    assert len(source) > cap

    data, mime, ext = fit_for_upload(source, "image/png", max_bytes=cap)

    assert (mime, ext) == ("image/jpeg", "jpg")
    assert len(data) <= cap
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert image.width <= 3840 and image.height <= 2160


def test_side_limit_downscales() -> None:
    source = encode(Image.new("RGB", (2000, 1000), (5, 5, 5)), "PNG")
    data, mime, _ = fit_for_upload(source, "image/png", max_bytes=10 * MB, max_side_sum=1500)
    assert mime == "image/jpeg"
    assert sum(image_size(data)) <= 1500


def test_transparent_pixels_become_white_in_jpeg() -> None:
    source = encode(noise(200, 200).convert("RGBA"), "PNG")
    clear = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    clear.paste(noise(100, 100), (100, 100))
    data, _, _ = fit_for_upload(encode(clear, "PNG"), "image/png", max_bytes=len(source) // 100)
    with Image.open(io.BytesIO(data)) as image:
        corner = image.convert("RGB").getpixel((2, 2))
    assert isinstance(corner, tuple) and min(corner) > 240


def test_impossible_fit_is_refused() -> None:
    with pytest.raises(BadInputImage):
        fit_for_upload(encode(noise(300, 300), "PNG"), "image/png", max_bytes=100)
