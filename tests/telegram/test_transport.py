"""The aiohttp request class under python-telegram-bot, and the rate limiter, against the fake Bot API on
127.0.0.1 (and two tiny servers for the failures the fake cannot play: a slow answer, a closed port)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram.error import NetworkError, RetryAfter, TimedOut
from telegram.ext import ExtBot
from telegram.request import BaseRequest, RequestData
from telegram.request._requestparameter import RequestParameter

from bots.process.config import Settings
from bots.telegram.bot import TelegramBot
from bots.telegram.transport import AiohttpRequest, EaselRateLimiter, FleetRateLimiter, rate_limiter, redact
from core.ports import Fleet
from tests.fakes.fake_provider import png
from tests.fakes.fake_telegram import FakeTelegram
from tests.telegram.telegram_support import ErrorLog, FakeServices

SECRET_TOKEN = "424242:SeCrEt-token_never_shown"  # a made-up token the tests look for


class PartsTelegram(FakeTelegram):
    """The fake Bot API, also noting each uploaded part's filename and MIME type."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: dict[str, tuple[str | None, str]] = {}
        self.content_types: list[str] = []

    async def _api(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        response = await super()._api(request)
        for name, value in (await request.post()).items():  # the form the fake parsed (aiohttp caches it)
            if isinstance(value, web.FileField):
                self.parts[name] = (value.filename, value.content_type)
        return response


@pytest.fixture
async def ptg(error_log: ErrorLog) -> AsyncIterator[PartsTelegram]:
    server = PartsTelegram()
    async with server:
        yield server
        assert not server.fake_errors, server.fake_errors


@pytest.fixture
async def bot(ptg: PartsTelegram) -> AsyncIterator[Bot]:
    async with Bot(ptg.token, base_url=ptg.base_url, request=AiohttpRequest(),
                   get_updates_request=AiohttpRequest(connection_pool_size=1)) as started:
        yield started


@pytest.fixture
async def slow_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """Answers `/bot<token>/<method>` only once the returned event is set (or after 5 s)."""
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 5)
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", slow)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", release
    release.set()
    await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_no_token(error: BaseException) -> None:
    shown = "".join(traceback.format_exception(error)) + repr(error) + str(error)
    assert SECRET_TOKEN not in shown
    assert SECRET_TOKEN.split(":", 1)[1] not in shown
    assert error.__cause__ is None and error.__suppress_context__  # aiohttp's own text (with the URL) not chained


def noise_png(side: int) -> bytes:
    """An incompressible PNG: side 700 gives about 1.4 MB (more than aiohttp's 1 MiB raw-bytes warning)."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- calls and uploads ----------------------------------------------------------------------------------------


async def test_a_json_call_arrives_as_ptb_encodes_it(ptg: PartsTelegram, bot: Bot) -> None:
    chat = ptg.private_chat(ptg.user())
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Reroll", callback_data="r:1")]])
    sent = await bot.send_message(chat["id"], "123", reply_markup=markup)
    call = await ptg.wait_for("sendMessage")
    assert sent.text == "123" and sent.chat.id == chat["id"]
    assert call.params["chat_id"] == str(chat["id"])  # non-strings JSON-encoded, strings raw
    assert call.params["text"] == "123"
    assert call.params["reply_markup"] == {"inline_keyboard": [[{"text": "Reroll", "callback_data": "r:1"}]]}
    assert ptg.content_types[-1] == "application/x-www-form-urlencoded"
    assert call.headers["User-Agent"] == BaseRequest.USER_AGENT


@pytest.mark.parametrize("side", [48, 700])
async def test_a_photo_upload_keeps_filename_mime_type_and_bytes(ptg: PartsTelegram, bot: Bot, side: int) -> None:
    chat = ptg.private_chat(ptg.user())
    image = png(side, side) if side < 100 else noise_png(side)
    sent = await bot.send_photo(chat["id"], InputFile(image, filename="fox.png"), caption="#1 · a fox")
    call = await ptg.wait_for("sendPhoto")
    assert call.files["photo"] == image
    assert ptg.parts["photo"] == ("fox.png", "image/png")
    assert call.params["caption"] == "#1 · a fox" and call.params["chat_id"] == str(chat["id"])
    assert ptg.content_types[-1] == "multipart/form-data"
    assert sent.photo[-1].file_size == len(image)


async def test_a_document_upload_keeps_filename_mime_type_and_bytes(ptg: PartsTelegram, bot: Bot) -> None:
    chat = ptg.private_chat(ptg.user())
    data = png(32, 32, (0, 0, 0))
    await bot.send_document(chat["id"], InputFile(data, filename="round-7.png"), caption="with alpha")
    call = await ptg.wait_for("sendDocument")
    assert call.files["document"] == data
    assert ptg.parts["document"] == ("round-7.png", "image/png")
    assert call.params["caption"] == "with alpha"


async def test_a_file_handle_upload_is_streamed(ptg: PartsTelegram, bot: Bot) -> None:
    chat = ptg.private_chat(ptg.user())
    data = png(20, 20)
    handle = io.BytesIO(data)
    await bot.send_document(chat["id"], InputFile(handle, filename="in.png", read_file_handle=False))
    assert (await ptg.wait_for("sendDocument")).files["document"] == data
    assert ptg.parts["document"] == ("in.png", "image/png")


# -- failures ---------------------------------------------------------------------------------------------------


async def test_a_slow_answer_is_timed_out_without_the_token(slow_server: tuple[str, asyncio.Event]) -> None:
    root, _ = slow_server
    async with AiohttpRequest(read_timeout=0.1) as request:
        started = time.monotonic()
        with pytest.raises(TimedOut) as raised:
            await request.post(f"{root}/bot{SECRET_TOKEN}/getMe")
        assert time.monotonic() - started < 2
        # A per-call read timeout overrides the default.
        with pytest.raises(TimedOut):
            await request.post(f"{root}/bot{SECRET_TOKEN}/getMe", read_timeout=0.05)
    assert_no_token(raised.value)


async def test_waiting_for_a_pooled_connection_times_out_without_the_token(
    slow_server: tuple[str, asyncio.Event],
) -> None:
    root, release = slow_server
    async with AiohttpRequest(connection_pool_size=1, pool_timeout=0.1, connect_timeout=0.1,
                              read_timeout=5) as request:
        holder = asyncio.create_task(request.post(f"{root}/bot{SECRET_TOKEN}/sendMessage"))
        await asyncio.sleep(0.05)  # the one connection is taken
        with pytest.raises(TimedOut) as raised:
            await request.post(f"{root}/bot{SECRET_TOKEN}/getMe")
        release.set()
        assert await holder is True
    assert_no_token(raised.value)
    assert "bot<token>" in str(raised.value)  # aiohttp's text named the URL: it is kept, redacted


async def test_connection_refused_is_a_network_error_without_the_token() -> None:
    async with AiohttpRequest(connect_timeout=2) as request:
        with pytest.raises(NetworkError) as raised:
            await request.post(f"http://127.0.0.1:{closed_port()}/bot{SECRET_TOKEN}/getMe")
    assert not isinstance(raised.value, TimedOut)
    assert "aiohttp.ClientConnectorError" in str(raised.value)
    assert_no_token(raised.value)


def test_redact_cuts_every_token_path() -> None:
    text = f"GET http://h/bot{SECRET_TOKEN}/getMe and http://h/file/bot{SECRET_TOKEN}/photos/f.jpg"
    assert redact(text) == "GET http://h/bot<token>/getMe and http://h/file/bot<token>/photos/f.jpg"


# -- lifecycle and timeouts ----------------------------------------------------------------------------------------


async def test_shutdown_closes_the_session_and_initialize_reopens_it(ptg: PartsTelegram) -> None:
    request = AiohttpRequest()
    await request.post(f"{ptg.base_url}{ptg.token}/getMe")  # first use without initialize() opens a session
    first = request.session
    assert first is not None and not first.closed
    await request.shutdown()
    assert first.closed and request.session is None
    with pytest.raises(NetworkError, match="not initialized"):  # PTB wraps the RuntimeError, as for HTTPXRequest
        await request.post(f"{ptg.base_url}{ptg.token}/getMe")
    await request.shutdown()  # twice is harmless
    async with request:  # initialize() again
        assert await request.post(f"{ptg.base_url}{ptg.token}/getMe")
        second = request.session
        assert second is not None and second is not first
    assert second.closed


def test_timeouts_follow_ptb_default_and_none_semantics() -> None:
    request = AiohttpRequest(read_timeout=3, write_timeout=4, connect_timeout=5, pool_timeout=1,
                             media_write_timeout=30)
    default = BaseRequest.DEFAULT_NONE
    plain = request._timeout("POST", False, default, default, default, default)
    assert (plain.sock_read, plain.sock_connect, plain.connect, plain.total) == (3, 5, 6, 3 + 4 + 5 + 1)
    upload = request._timeout("POST", True, default, default, default, default)
    assert upload.total == 3 + 30 + 5 + 1  # media_write_timeout is the write part of an upload
    given = request._timeout("POST", False, 40, 2, default, default)  # getUpdates: PTB adds the long poll
    assert given.sock_read == 40 and given.total == 40 + 2 + 5 + 1
    unlimited = request._timeout("POST", False, None, default, default, None)
    assert unlimited.sock_read is None and unlimited.connect is None and unlimited.total is None
    assert unlimited.sock_connect == 5
    download = request._timeout("GET", False, default, default, default, default)
    assert download.total is None and download.sock_read == 3  # a file download: bounded between chunks
    assert request.read_timeout == 3


async def test_a_proxy_url_is_used(ptg: PartsTelegram) -> None:
    """An HTTP proxy gets the absolute URL; a tiny forwarding proxy proves the request went through it."""
    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        async with AiohttpRequest(trust_env=False) as inner:
            status, body = await inner.do_request(str(request.url), request.method)
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        proxy = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with AiohttpRequest(proxy=proxy) as request:
            assert await request.post(f"{ptg.base_url}{ptg.token}/getMe")
    finally:
        await runner.cleanup()
    assert seen == [f"{ptg.base_url}{ptg.token}/getMe"]
    await ptg.wait_for("getMe")


# -- the rate limiter --------------------------------------------------------------------------------------------


def limited_bot(tg: FakeTelegram, limiter: EaselRateLimiter | FleetRateLimiter) -> ExtBot[Any]:
    return ExtBot(tg.token, base_url=tg.base_url, request=AiohttpRequest(),
                  get_updates_request=AiohttpRequest(connection_pool_size=1), rate_limiter=limiter)


async def test_the_limiter_holds_a_group_burst_to_the_group_limit(ptg: PartsTelegram) -> None:
    group = ptg.group_chat()
    private = ptg.private_chat(ptg.user())
    async with limited_bot(ptg, rate_limiter(group_per_period=3, group_period=60)) as bot:
        burst = [asyncio.create_task(bot.send_message(group["id"], f"m{n}")) for n in range(6)]
        await ptg.wait_for("sendMessage", count=3)
        # A private chat is not held behind the group, and reads are not throttled at all.
        await bot.send_message(private["id"], "hi")
        for _ in range(4):
            await bot.get_chat_administrators(group["id"])
        edits = [asyncio.create_task(bot.edit_message_text("x", group["id"], 1))]  # edits count too
        await asyncio.sleep(0.2)
        to_group = [c for c in ptg.calls if c.params.get("chat_id") == str(group["id"])
                    and c.method in {"sendMessage", "editMessageText"}]
        assert len(to_group) == 3, [c.method for c in to_group]
        assert len(ptg.calls_to("getChatAdministrators")) == 4
        assert [c.params["chat_id"] for c in ptg.calls_to("sendMessage")].count(str(private["id"])) == 1
        assert sum(task.done() for task in burst) == 3 and not edits[0].done()
        for task in [*burst, *edits]:
            task.cancel()
        await asyncio.gather(*burst, *edits, return_exceptions=True)


async def test_the_limiter_holds_a_burst_to_the_overall_rate(ptg: PartsTelegram) -> None:
    chats = [ptg.private_chat(ptg.user())["id"] for _ in range(8)]
    async with limited_bot(ptg, rate_limiter(overall_per_second=4)) as bot:
        sends = [asyncio.create_task(bot.send_message(chat, "hi")) for chat in chats]
        await ptg.wait_for("sendMessage", count=4)
        await asyncio.sleep(0.1)
        assert len(ptg.calls_to("sendMessage")) in {4, 5}  # aiolimiter drips 1 per 0.25 s after the burst
        await asyncio.wait_for(asyncio.gather(*sends), 5)
    assert len(ptg.calls_to("sendMessage")) == 8


async def test_each_worker_of_a_fleet_paces_itself_to_its_share(ptg: PartsTelegram) -> None:
    """Telegram's overall rate is the bot's: two workers get half each; when one leaves, the whole."""
    fleet = Fleet(workers=2)
    limiter = FleetRateLimiter(fleet, overall_per_second=8)
    assert limiter.overall_per_second == 4
    chats = [ptg.private_chat(ptg.user())["id"] for _ in range(8)]
    async with limited_bot(ptg, limiter) as bot:
        sends = [asyncio.create_task(bot.send_message(chat, "hi")) for chat in chats]
        await ptg.wait_for("sendMessage", count=4)
        await asyncio.sleep(0.1)
        assert len(ptg.calls_to("sendMessage")) in {4, 5}  # half of 8 a second: a burst of 4, then a drip
        await asyncio.wait_for(asyncio.gather(*sends), 5)
        fleet.workers = 1  # the other worker is gone: this one may use the whole rate
        await asyncio.wait_for(asyncio.gather(*(bot.send_message(chat, "again") for chat in chats)), 0.5)
        assert limiter.overall_per_second == 8
    assert len(ptg.calls_to("sendMessage")) == 16


async def test_with_a_fleet_allowance_every_chat_message_takes_its_turn_from_it(ptg: PartsTelegram) -> None:
    asked: list[tuple[str, float, float]] = []
    broken = False

    async def pace(name: str, per_second: float, burst: float) -> float:
        if broken:
            raise OSError("database gone")
        asked.append((name, per_second, burst))
        return 0.05 if len(asked) == 3 else 0.0

    limiter = FleetRateLimiter(Fleet(workers=2, pace=pace), overall_per_second=8)
    chats = [ptg.private_chat(ptg.user())["id"] for _ in range(8)]
    async with limited_bot(ptg, limiter) as bot:
        await asyncio.wait_for(asyncio.gather(*(bot.send_message(chat, "hi") for chat in chats)), 2)
        await bot.send_chat_action(chats[0], "upload_photo")  # an indicator, not a message
        await bot.get_me()  # a read
        assert asked == [("telegram", 8, 8)] * 8  # the fleet's 8 a second, not this worker's 4
        broken = True  # the database cannot be asked: this worker's share (4 a second) paces it
        sends = [asyncio.create_task(bot.send_message(chat, "again")) for chat in chats]
        await ptg.wait_for("sendMessage", count=8 + 4)
        await asyncio.sleep(0.1)
        assert len(ptg.calls_to("sendMessage")) in {12, 13}
        await asyncio.wait_for(asyncio.gather(*sends), 5)


async def test_a_429_passes_through_the_limiter_at_once_for_floodgate(ptg: PartsTelegram) -> None:
    """max_retries=0: the limiter neither sleeps on RetryAfter nor pauses other chats; no ERROR is logged
    (the error_log fixture would fail the test)."""
    held = ptg.private_chat(ptg.user())
    other = ptg.private_chat(ptg.user())
    ptg.flood_next("sendMessage", retry_after=30)
    async with limited_bot(ptg, rate_limiter()) as bot:
        started = time.monotonic()
        with pytest.raises(RetryAfter):
            await bot.send_message(held["id"], "one")
        await bot.send_message(other["id"], "two")
        assert time.monotonic() - started < 1
    assert len(ptg.calls_to("sendMessage")) == 2


def test_the_bot_is_built_on_this_transport_and_limiter(
    tg_settings: Callable[..., Settings], fake: FakeServices
) -> None:
    app = TelegramBot(tg_settings(), fake.services, request_timeout=7).build_application()
    assert isinstance(app.bot.request, AiohttpRequest) and app.bot.request.read_timeout == 7
    updates = app.bot._request[0]
    assert isinstance(updates, AiohttpRequest) and updates.read_timeout == 7
    assert isinstance(app.bot.rate_limiter, FleetRateLimiter) and app.bot.rate_limiter.overall_per_second == 30


async def test_request_data_without_files_or_fields(ptg: PartsTelegram) -> None:
    async with AiohttpRequest() as request:
        empty = RequestData()
        assert await request.post(f"{ptg.base_url}{ptg.token}/getMe", request_data=empty)
        fields = RequestData([RequestParameter.from_input("chat_id", 5), RequestParameter.from_input("x", "é&=")])
        status, _ = await request.do_request(f"{ptg.base_url}{ptg.token}/nope", "POST", request_data=fields)
    assert status == 404
    assert ptg.calls_to("nope")[0].params == {"chat_id": "5", "x": "é&="}
