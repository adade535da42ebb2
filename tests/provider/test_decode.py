"""Image base64 from the provider: a full-size image is decoded in a thread, in pieces, with exactly the result
and the refusals of the one-piece decode; on every route (the Responses route's final image included)."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.provider.classify import InBand
from core.provider.responses import ResponsesProvider
from core.provider.uploads import OFF_LOOP_CHARS, decode, decode_in_pieces, decode_off_loop
from tests.fakes.fake_openai import FakeOpenAI
from tests.provider.support import Events, job, make_client

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def outcome(decoder: Callable[[str], bytes], data: str) -> bytes | None:
    try:
        return decoder(data)
    except InBand:
        return None


@settings(max_examples=400, deadline=None)
@given(
    raw=st.binary(max_size=60),
    edits=st.lists(st.tuples(st.integers(0, 200), st.sampled_from([*ALPHABET, "=", "==", "\n", " ", "-", "é", ""]))),
    padding=st.sampled_from(["", "=", "==", "===", "===="]),
    chunk=st.sampled_from([4, 8, 12, 16, 64]),
)
def test_pieces_decode_exactly_as_one_piece(raw: bytes, edits: list[tuple[int, str]], padding: str, chunk: int) -> None:
    text = base64.b64encode(raw).decode()
    for position, insert in edits:  # garble it: a stray character, a newline, padding in the middle
        at = min(position, len(text))
        text = text[:at] + insert + text[at:]
    text += padding
    assert outcome(lambda d: decode_in_pieces(d, chunk), text) == outcome(decode, text), text


@pytest.mark.parametrize(
    "text", ["", "=", "YQ==YWJj", "YWJj====", "G1MM=", "YQ==" * 3, "YWJj" * 4 + "=", "YWJ=YWJj", "YWJj\nYWJj"]
)
def test_edge_cases_decode_exactly_as_one_piece(text: str) -> None:
    assert outcome(lambda d: decode_in_pieces(d, 4), text) == outcome(decode, text)


async def test_a_full_size_image_is_decoded_whole() -> None:
    image = os.urandom(3 * OFF_LOOP_CHARS)
    assert await decode_off_loop(base64.b64encode(image).decode()) == image
    with pytest.raises(InBand):
        await decode_off_loop(base64.b64encode(image).decode()[:-1] + "!")


class BigImages(FakeOpenAI):
    """Final images of about 1 MB of noise: their base64 is far over the off-loop threshold."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[bytes] = []

    def _new_image(self, *, transparent: bool = False) -> tuple[int, bytes]:
        number, _ = super()._new_image(transparent=transparent)
        self.made.append(os.urandom(1_000_000))
        return number, self.made[-1]


@pytest.fixture
async def big() -> AsyncIterator[BigImages]:
    server = BigImages()
    async with server:
        yield server
        assert not server.fake_errors, server.fake_errors[0]


@pytest.mark.parametrize("mode", ["stream", "json", "background"])
async def test_the_responses_route_delivers_a_full_size_image_intact(big: BigImages, mode: str) -> None:
    sdk = make_client(f"{big.origin}/v1")
    options: dict[str, Any] = {"image_model": "gpt-image-2", "backoff": 0.01, "timeout": 10.0}
    if mode == "json":
        options["partial_images"] = 0
    if mode == "background":
        options.update(background=True, call_timeout=5.0, poll_interval=0.01, max_poll_interval=0.05)
    provider = ResponsesProvider(sdk, host_model="gpt-5.5", **options)
    try:
        result = await provider.create(job(), Events())
    finally:
        await provider.aclose()
    assert len(big.made) == 1
    assert result.image == big.made[0]
