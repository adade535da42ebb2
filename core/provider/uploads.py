"""Pictures going to the provider, and images coming back.

Every upload carries a filename and an image MIME type (the API refuses `application/octet-stream`); a
picture over the upload cap is shrunk first. Base64 from the provider is decoded strictly: a garbled image
is a stopped round, never a broken file in the chat."""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass, field

from core.ports import ImageJob
from core.provider.classify import Failure, InBand, stopped
from core.provider.pictures import extension_for, fit_for_upload


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes = field(repr=False)
    mime: str
    ext: str

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def file(self, index: int) -> tuple[str, bytes, str]:
        """The SDK's (filename, bytes, mime) tuple for a multipart upload."""
        return (f"image-{index + 1}.{self.ext}", self.data, self.mime)


def pictures(job: ImageJob, parent_image: tuple[bytes, str] | None) -> list[tuple[bytes, str]]:
    """The pictures a job sends: the parent first (when it is sent as bytes), then the reference images."""
    return ([parent_image] if parent_image else []) + [(data, "image/png") for data in job.inputs]


async def prepare(images: list[tuple[bytes, str]], max_bytes: int) -> list[Upload]:
    """Label each picture with a MIME type and shrink the ones over the upload cap (off the event loop)."""
    prepared = []
    for original, original_mime in images:
        if len(original) > max_bytes:
            data, mime, ext = await asyncio.to_thread(fit_for_upload, original, original_mime, max_bytes=max_bytes)
        else:
            data, mime, ext = original, original_mime, extension_for(original_mime)
        prepared.append(Upload(data, mime, ext))
    return prepared


OFF_LOOP_CHARS = 256_000  # base64 longer than this (about 190 KB of image) is decoded off the event loop
CHUNK_CHARS = 65_536  # decoded at a time (a multiple of 4): well under a millisecond each


async def decode_off_loop(data: str) -> bytes:
    """A full-size image's base64 takes several milliseconds to decode: a thread does it, the loop stays free.
    binascii holds the GIL for the whole of one call, so the thread decodes piece by piece: between pieces the
    event loop gets the GIL back (within the interpreter's switch interval) instead of waiting for the end."""
    if len(data) > OFF_LOOP_CHARS:
        return await asyncio.to_thread(decode_in_pieces, data)
    return decode(data)


def decode(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InBand(Failure(stopped())) from None


def decode_in_pieces(data: str, chunk: int = CHUNK_CHARS) -> bytes:
    """`decode` in pieces of `chunk` characters (a multiple of 4), with the same result and the same refusals.
    Every piece but the last is plain base64 (no padding), checked strictly by binascii itself; the last piece
    takes the padding and goes through `decode`'s own check."""
    assert chunk % 4 == 0
    try:
        if not data.isascii():
            raise ValueError("not base64")
        end = len(data)
        while end and data[end - 1] == "=":
            end -= 1
        last = ((end - 1) // chunk) * chunk if end else 0  # where the last piece (and the padding) starts
        pieces = []
        for start in range(0, last, chunk):  # str slices of 64 KiB: no copy of the whole payload
            piece = data[start : start + chunk]
            if piece[-1] == "=":
                raise binascii.Error("padding before the end")
            pieces.append(binascii.a2b_base64(piece, strict_mode=True))
        pieces.append(base64.b64decode(data[last:], validate=True))
    except (binascii.Error, ValueError):
        raise InBand(Failure(stopped())) from None
    return b"".join(pieces)
