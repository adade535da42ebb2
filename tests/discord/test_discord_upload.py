"""Uploads share the image's bytes with aiohttp instead of copying them (memory stays flat under load)."""

from __future__ import annotations

import io

import aiohttp.payload

from bots.discord.common import SharedBytes, Upload


def test_payload_is_a_view_of_the_same_bytes() -> None:
    data = bytes(range(256)) * 4096
    payload = aiohttp.payload.get_payload(SharedBytes(data))
    assert payload.size == len(data)
    view = payload._value
    assert isinstance(view, memoryview) and view.obj is data  # no copy


def test_file_behaves_like_a_seekable_file() -> None:
    data = b"0123456789"
    handle = Upload(data, "x.png").file().fp
    assert handle.read(4) == b"0123" and handle.tell() == 4
    handle.seek(0)
    assert handle.read() == data
    handle.seek(-3, io.SEEK_END)
    assert handle.read(10) == b"789"
