"""Bad input: a hostile image corpus (through core.provider.pictures.validate_input, then through both adapters),
oversized prompts, control characters and mass mentions. Each image is rejected or normalised in under a
second with bounded memory; nothing bad is charged; every Discord send disables mass mentions and no
Telegram send uses a parse_mode."""

from __future__ import annotations

import io
import random
import struct
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.errors import BadInputImage
from core.provider.pictures import validate_input
from tests.discord.discord_support import assert_no_mass_mentions
from tests.fakes.fake_provider import FakeProvider
from tests.reliability.conftest import ledger, settle, wait_until, write_summary
from tests.reliability.stacks import discord_stack, telegram_stack

MAX_BYTES, MAX_PIXELS = 20_000_000, 40_000_000


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_bomb(side: int) -> bytes:
    """A PNG that declares side x side 1-bit pixels with a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(
        b"IEND", b"")


def _save(image: Image.Image, fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


def _gif_extents_bomb() -> bytes:
    """A GIF whose logical screen is 65535 x 65535 around one 1x1 frame."""
    tiny = bytearray(_save(Image.new("P", (1, 1)), "GIF"))
    tiny[6:10] = struct.pack("<HH", 65535, 65535)
    return bytes(tiny)


def _exif_jpeg() -> bytes:
    image = Image.new("RGB", (60, 30), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    exif[0x8825] = {2: (52.0, 31.0, 0.0), 4: (13.0, 24.0, 0.0)}  # GPS
    return _save(image, "JPEG", exif=exif.tobytes())


def _corpus() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected: 'reject' or 'normalise')."""
    rng = random.Random(3)
    real = _save(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    frames = [Image.new("P", (8, 8), i % 256) for i in range(1000)]
    many = io.BytesIO()
    frames[0].save(many, format="GIF", save_all=True, append_images=frames[1:])
    noise = Image.frombytes("RGB", (1024, 1024), rng.randbytes(1024 * 1024 * 3))
    return {
        "png_20000x20000_1bit_bomb": (_png_header_bomb(20000), "reject"),
        "png_100000x100000_bomb": (_png_header_bomb(100000), "reject"),
        "gif_extents_bomb": (_gif_extents_bomb(), "reject"),
        "truncated_png": (real[: len(real) // 2], "reject"),
        "truncated_jpeg": (_save(noise.resize((256, 256)), "JPEG")[:3000], "reject"),
        "empty": (b"", "reject"),
        "html_as_png": (b"<!doctype html><html><script>alert(1)</script></html>", "reject"),
        "svg_as_png": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9e9"/>', "reject"),
        "pdf_as_jpg": (b"%PDF-1.7\n" + rng.randbytes(2000), "reject"),
        "tiff": (_save(Image.new("RGB", (16, 16)), "TIFF"), "reject"),
        "bmp": (_save(Image.new("RGB", (16, 16)), "BMP"), "reject"),
        "random_bytes": (rng.randbytes(50_000), "reject"),
        "too_many_bytes": (b"\x89PNG\r\n\x1a\n" + b"\x00" * (MAX_BYTES + 1), "reject"),
        "gif_1000_frames": (many.getvalue(), "normalise"),
        "cmyk_jpeg": (_save(Image.new("CMYK", (40, 40), (0, 50, 100, 0)), "JPEG"), "normalise"),
        "png_16bit": (_save(Image.new("I;16", (40, 40), 30000), "PNG"), "normalise"),
        "exif_gps_rotated_jpeg": (_exif_jpeg(), "normalise"),
        "noise_1024_png": (_save(noise, "PNG", compress_level=1), "normalise"),
        "webp": (_save(Image.new("RGBA", (30, 30), (1, 2, 3, 128)), "WEBP"), "normalise"),
    }


def test_image_corpus_rejected_or_normalised_fast_with_bounded_memory() -> None:
    results: dict[str, dict[str, Any]] = {}
    for name, (data, expected) in _corpus().items():
        tracemalloc.start()
        started = time.perf_counter()
        try:
            png, width, height = validate_input(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
            outcome = "normalise"
        except BadInputImage as error:
            outcome, png, width, height = "reject", b"", 0, 0
            assert error.message and "Traceback" not in error.message
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        results[name] = {"outcome": outcome, "ms": round(seconds * 1000, 1), "peak_mb": round(peak / 1e6, 1)}
        assert outcome == expected, (name, results[name])
        assert seconds < 1.0, (name, results[name])
        assert peak < 200e6, (name, results[name])
        if png:
            with Image.open(io.BytesIO(png)) as out:
                assert out.format == "PNG" and out.mode in ("RGB", "RGBA")
                assert "exif" not in out.info and not out.getexif(), name  # metadata (GPS) dropped
                assert (out.width, out.height) == (width, height)
    rotated = results["exif_gps_rotated_jpeg"]
    write_summary("image-corpus", files=len(results), worst_ms=max(r["ms"] for r in results.values()),
                  worst_peak_mb=max(r["peak_mb"] for r in results.values()), results=results)
    assert rotated["outcome"] == "normalise"


async def test_bad_images_through_both_adapters_are_refused_and_never_charged(tmp_path: Path) -> None:
    corpus = _corpus()
    bad = ["png_20000x20000_1bit_bomb", "gif_extents_bomb", "truncated_png", "html_as_png", "svg_as_png"]
    async with telegram_stack(tmp_path / "tg", provider=(tg_provider := FakeProvider())) as s:
        tg = s.tg
        ann = tg.user("Ann", "ann")
        chat = tg.private_chat(ann)
        for name in bad:
            await tg.send_message(chat, ann, f"/imagine fix {name}", document=(corpus[name][0], "image/png", "x.png"))
        await wait_until(tg, lambda: len(tg.calls_to("sendMessage")) >= len(bad), what="five refusals")
        await settle(s.tasks)
        tg_texts = [c.params["text"] for c in tg.calls_to("sendMessage")]
        tg_book = ledger(s.settings.db_path)
        assert all("parse_mode" not in c.params for c in tg.calls if c.method.startswith(("send", "edit")))
    async with discord_stack(tmp_path / "dc", provider=(dc_provider := FakeProvider())) as d:
        fake = d.fake
        guild = await fake.guild("Painters")
        alice = fake.member(guild, "alice")
        asked = [await fake.slash_command(guild.channel, alice, "edit", {
            "instruction": f"fix {name}", "image": (f"{name}.png", corpus[name][0], "image/png")}) for name in bad]
        await fake.wait_until(lambda: all(fake.replies(i) for i in asked), what="five refusals")
        await settle(d.tasks)
        dc_texts = [fake.replies(i)[0]["content"] for i in asked]
        dc_book = ledger(d.settings.db_path)
    write_summary("bad-images-adapters", telegram=tg_texts, discord=dc_texts)
    assert tg_provider.jobs == [] and dc_provider.jobs == []
    for book in (tg_book, dc_book):
        assert book.reserves == book.refunds and book.charged == 0 and book.problems == []
    assert all(not t.startswith("#") and "Something went wrong" not in t for t in tg_texts + dc_texts)


HOSTILE = [
    "@everyone look " + "x" * 10,
    "@here <@&123456789012345678> <@!42> ping",
    "line\x00one\x07\x1b[31mred\u202etxet\u200b",
    "*unbalanced _markdown [link](http://x) <b>html",
    "@everyone " + "🎨" * 1500,
]


@pytest.mark.parametrize("platform", ["telegram", "discord"])
async def test_long_prompts_control_characters_and_mass_mentions(tmp_path: Path, platform: str) -> None:
    prompts = [*HOSTILE, "z" * 5000]
    provider = FakeProvider()
    if platform == "telegram":
        async with telegram_stack(tmp_path / "data", provider=provider, EASEL_USER_CONCURRENCY=20) as s:
            tg = s.tg
            group = tg.group_chat("G")
            ann = tg.user("Ann", "ann")
            for prompt in prompts:
                await tg.send_message(group, ann, f"/imagine {prompt}")
            await wait_until(tg, lambda: len(_tg_final(tg)) >= len(prompts), what="an answer to each prompt")
            await settle(s.tasks)
            answers = _tg_final(tg)
            sends = [c for c in tg.calls if c.method.startswith(("send", "edit"))]
            assert all("parse_mode" not in c.params for c in sends)
            assert all(len(c.params.get("text", "")) <= 4096 and len(c.params.get("caption", "")) <= 1024
                       for c in sends)
    else:
        async with discord_stack(tmp_path / "data", provider=provider, EASEL_USER_CONCURRENCY=20) as d:
            fake = d.fake
            guild = await fake.guild("G")
            alice = fake.member(guild, "alice")
            asked = [await fake.slash_command(guild.channel, alice, "imagine", {"prompt": p}) for p in prompts]
            await fake.wait_until(lambda: all(_dc_final(fake, i) for i in asked), what="an answer to each prompt")
            await settle(d.tasks)
            answers = [fake.replies(i)[0]["content"] for i in asked]
            assert_no_mass_mentions(fake)
            assert all(len(c.params.get("content") or "") <= 2000 for c in fake.sends())
    cleaned = [job.prompt for job in provider.jobs]
    write_summary(f"hostile-prompts-{platform}", answers=[a[:80] for a in answers], provider_prompts=len(cleaned))
    assert len(answers) == len(prompts)
    assert any("5000 characters" in a for a in answers), answers  # the long prompt is refused, with the limit
    assert len(cleaned) == len(HOSTILE)
    assert all(not any(ord(ch) < 32 and ch not in "\n\t" for ch in p) for p in cleaned)
    assert all("\u202e" not in p and "\u200b" not in p for p in cleaned)


def _tg_final(tg: Any) -> list[str]:
    bot = tg.bot_user["id"]
    return [m.get("caption") or m.get("text", "") for m in tg.messages.values() if m.get("from", {}).get("id") == bot
            and not str(m.get("text", "")).startswith(("Queued", "Working"))]


def _dc_final(fake: Any, interaction: Any) -> bool:
    shown = fake.replies(interaction)
    return bool(shown) and not shown[0]["content"].startswith(("Drawing", "Queued"))
