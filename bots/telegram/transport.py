"""The HTTP transport under python-telegram-bot, and the rate limiter in front of it.

`AiohttpRequest` is a `telegram.request.BaseRequest` on aiohttp, in place of PTB's default `HTTPXRequest`
(httpx 0.28 on httpcore 1.0.9). It mirrors `HTTPXRequest`'s behaviour:

- one `aiohttp.ClientSession` per request object, on a `TCPConnector(limit=connection_pool_size)`, opened in
  `initialize` (or on first use), closed in `shutdown`; a call after `shutdown` fails (RuntimeError, which PTB
  reports as NetworkError, as with HTTPXRequest);
- the body PTB builds: `RequestData.json_parameters` (strings raw, everything else JSON) as a urlencoded form,
  or, with files, as `multipart/form-data` whose file parts keep their filename and MIME type;
- timeouts per call, `DEFAULT_NONE` meaning the object's defaults, `None` meaning no limit: connect ->
  `sock_connect`, pool + connect -> `connect` (aiohttp's wait for a pooled connection includes the connect),
  read -> `sock_read`. aiohttp has no per-write timeout, so a POST is bounded as a whole by
  connect + pool + write + read (with `media_write_timeout` as the write part of an upload) when all four are
  finite; a GET (a file download) only by its read timeout between chunks, as before;
- a proxy URL, else `HTTP(S)_PROXY`/`ALL_PROXY`/`NO_PROXY` from the environment (httpx's default), looked up
  once per origin;
- failures: any timeout -> `telegram.error.TimedOut`, any other `aiohttp.ClientError` or `OSError` ->
  `telegram.error.NetworkError`. The message names the aiohttp error class and its text with every
  `/bot<token>` path cut out, and the aiohttp exception is not chained: aiohttp puts the request URL, which
  holds the bot token, into several of its messages.

Why aiohttp (measured with `python -m tests.bench.bench_transport`: 2,000 `sendMessage` calls through a real
`telegram.Bot`, 100 at once, against the fake Bot API on 127.0.0.1 in another process, so the CPU is the client's
alone; median of 5 runs, transports taking turns; 2 vCPU AMD EPYC (KVM), Python 3.11.7, aiohttp 3.14.5,
httpx 0.28.1 / httpcore 1.0.9, httpx2 2.16.2; details in docs/benchmarks-transport.md):

    request class                 CPU per call   calls/s
    PTB alone (no network)          0.12 ms        8,600
    HTTPXRequest (httpx)            2.56 ms          380
    the same code on httpx2         2.14 ms          460
    AiohttpRequest                  0.41 ms        2,260

aiohttp costs a sixth of httpx's CPU per call and a fifth of httpx2's (at 10 at once: 0.36 ms vs 2.3 and
1.0 ms; httpx's pool bookkeeping grows with the calls in flight, httpx2's less, aiohttp's hardly). aiohttp is
also already a dependency (Easel's web server, discord.py), so it adds no HTTP stack; httpx2 would have needed a
copy of PTB's HTTPXRequest code, kept in step with PTB by hand.

The limiter: `rate_limiter()` is PTB's `AIORateLimiter` (aiolimiter's leaky buckets): about 30 requests a
second to chats overall and 20 a minute per group or channel (negative chat id), edits included, before
Telegram answers 429 (platform-limits T-b, T-c). Read-only and set-up calls (getChatMember, getFile, ...) and
chat actions (a passing "sending a photo…" indicator) are not messages and skip it: counting chat actions
would halve the images a second a bot may send. It costs about 5 µs of CPU per call, measured alone (4.3 µs for a
private chat, 5.2 µs for a group, whose calls pass two buckets), against about 410 µs for the call itself.
`max_retries=0`: a 429 is Easel's to handle, per chat (`bots.telegram.send.FloodGate` holds the chat for
`retry_after`, then retries), so the limiter neither sleeps on a RetryAfter nor pauses every chat for one
chat's 429. The ERROR it logs each time it passes a 429 on unretried is dropped (FloodGate logs a warning).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import JSONDict, ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.ext import AIORateLimiter, BaseRateLimiter
from telegram.request import BaseRequest, RequestData
from yarl import URL

from core.ports import Fleet

__all__ = [
    "AiohttpRequest", "EaselRateLimiter", "FleetRateLimiter", "api_request", "rate_limiter", "redact",
    "updates_request",
]

log = logging.getLogger(__name__)

_TOKEN_PATH = re.compile(r"/(file/)?bot[^/\s'\"]+")
_FORM = "application/x-www-form-urlencoded"


def redact(text: str) -> str:
    """`text` with every `/bot<token>` (and `/file/bot<token>`) path segment replaced by `/bot<token>`."""
    return _TOKEN_PATH.sub(lambda m: f"/{m.group(1) or ''}bot<token>", text)


def _describe(error: BaseException) -> str:
    return redact(f"aiohttp.{type(error).__name__}: {error}")


class AiohttpRequest(BaseRequest):
    """PTB's request interface on one aiohttp session (see the module docstring). Arguments as `HTTPXRequest`'s."""

    __slots__ = (
        "_connect_timeout", "_media_write_timeout", "_pool_size", "_pool_timeout", "_proxies", "_proxy",
        "_read_timeout", "_session", "_shut", "_trust_env", "_write_timeout",
    )

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._proxy = proxy
        self._trust_env = trust_env
        self._proxies: dict[str, str | None] = {}  # origin -> proxy from the environment (None: direct)
        self._session: aiohttp.ClientSession | None = None
        self._shut = False

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The open session, if any (tests check it is closed after `shutdown`)."""
        return self._session

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._pool_size)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.USER_AGENT},
            cookie_jar=aiohttp.DummyCookieJar(),  # the Bot API sets no cookies; skips the jar's work per call
            trust_env=False,  # the environment's proxies are resolved once per origin in _proxy_for
        )
        return self._session

    async def initialize(self) -> None:
        self._shut = False
        if self._session is None or self._session.closed:
            self._open()

    async def shutdown(self) -> None:
        self._shut = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _proxy_for(self, url: str) -> str | None:
        if self._proxy is not None or not self._trust_env:
            return self._proxy
        origin = url.split("/", 3)
        key = "/".join(origin[:3])
        try:
            return self._proxies[key]
        except KeyError:
            pass
        try:
            proxy: str | None = str(get_env_proxy_for_url(URL(key))[0])
        except LookupError:
            proxy = None
        if len(self._proxies) < 64:
            self._proxies[key] = proxy
        return proxy

    def _timeout(
        self,
        method: str,
        has_files: bool,
        read: ODVInput[float],
        write: ODVInput[float],
        connect: ODVInput[float],
        pool: ODVInput[float],
    ) -> aiohttp.ClientTimeout:
        read_s = self._read_timeout if isinstance(read, DefaultValue) else read
        connect_s = self._connect_timeout if isinstance(connect, DefaultValue) else connect
        pool_s = self._pool_timeout if isinstance(pool, DefaultValue) else pool
        if isinstance(write, DefaultValue):
            write_s = self._media_write_timeout if has_files else self._write_timeout
        else:
            write_s = write
        waiting = None if connect_s is None or pool_s is None else connect_s + pool_s
        total = None
        if method != "GET" and None not in (read_s, write_s, connect_s, pool_s):
            total = (read_s or 0.0) + (write_s or 0.0) + (connect_s or 0.0) + (pool_s or 0.0)
        return aiohttp.ClientTimeout(total=total, connect=waiting, sock_connect=connect_s, sock_read=read_s)

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            if self._shut:
                raise RuntimeError("This AiohttpRequest is not initialized!")
            session = self._open()  # first use without initialize()

        data: Any = None
        headers: dict[str, str] | None = None
        has_files = False
        if request_data is not None:
            fields = request_data.json_parameters
            files = request_data.multipart_data if request_data.contains_files else None
            if files:
                has_files = True
                form = aiohttp.FormData(quote_fields=False)
                for name, value in fields.items():
                    form.add_field(name, value)
                for name, (filename, content, mimetype) in files.items():
                    # Bytes go as a stream (BytesIO shares the buffer): aiohttp writes it in chunks, yielding
                    # to the loop, and warns (an error in the tests) about raw bytes over 1 MiB.
                    body = io.BytesIO(content) if isinstance(content, bytes) else content
                    form.add_field(name, body, filename=filename, content_type=mimetype)
                data = form
            elif fields:
                data = urllib.parse.urlencode(fields).encode()
                headers = {"Content-Type": _FORM}
        timeout = self._timeout(method, has_files, read_timeout, write_timeout, connect_timeout, pool_timeout)

        try:
            async with session.request(
                method, url, data=data, headers=headers, timeout=timeout, proxy=self._proxy_for(url),
                allow_redirects=False,  # httpx's default; the Bot API does not redirect
            ) as response:
                return response.status, await response.read()
        except TimeoutError as error:  # asyncio's, and aiohttp's ServerTimeoutError family
            raise TimedOut(f"Timed out ({_describe(error)})") from None
        except (aiohttp.ClientError, OSError) as error:
            raise NetworkError(_describe(error)) from None


def api_request(timeout: float, *, media_write_timeout: float = 60.0, pool_size: int = 256) -> AiohttpRequest:
    """The request object for API calls: every timeout `timeout`, uploads `media_write_timeout` at least."""
    return AiohttpRequest(
        connection_pool_size=pool_size, read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout,
        pool_timeout=timeout, media_write_timeout=max(timeout, media_write_timeout),
    )


def updates_request(timeout: float) -> AiohttpRequest:
    """The request object for getUpdates: one connection; PTB adds the long-poll timeout to `read_timeout`."""
    return AiohttpRequest(
        connection_pool_size=1, read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout,
        pool_timeout=timeout,
    )


# Calls that are not messages: not throttled (a moderator check must not wait behind a group's sends).
UNTHROTTLED = frozenset({
    "getMe", "getUpdates", "getFile", "getChat", "getChatMember", "getChatAdministrators", "getChatMemberCount",
    "getMyCommands", "setMyCommands", "deleteMyCommands", "getWebhookInfo", "setWebhook", "deleteWebhook",
    "answerCallbackQuery", "logOut", "close",
    "sendChatAction",  # an "uploading a photo…" indicator, not a message: it must not halve the messages a second
})


class _DropLimiterError(logging.Filter):
    """PTB's limiter logs ERROR (with a traceback) whenever it passes a 429 on without retrying, i.e. always
    with max_retries=0; the 429 is Easel's to handle (FloodGate), which logs it as a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Rate limit hit after maximum")


_LIMITER_LOGGER = "telegram.ext.AIORateLimiter"
PACE_NAME = "telegram"  # the fleet-wide allowance of Telegram's messages a second
_drop_filter = _DropLimiterError()


class EaselRateLimiter(AIORateLimiter):
    """PTB's AIORateLimiter with reads and set-up calls (`UNTHROTTLED`) let through unthrottled."""

    __slots__ = ()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | JSONDict | list[JSONDict]:
        if endpoint in UNTHROTTLED:
            return await callback(*args, **kwargs)
        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)


def rate_limiter(
    overall_per_second: float = 30, group_per_period: float = 20, group_period: float = 60
) -> EaselRateLimiter:
    """The limiter in front of every Bot API call (see the module docstring); never retries a 429 itself."""
    logger = logging.getLogger(_LIMITER_LOGGER)
    if _drop_filter not in logger.filters:
        logger.addFilter(_drop_filter)
    return EaselRateLimiter(
        overall_max_rate=overall_per_second, overall_time_period=1,
        group_max_rate=group_per_period, group_time_period=group_period, max_retries=0,
    )


class FleetRateLimiter(BaseRateLimiter[int]):
    """Telegram's 30 messages a second belong to the bot, not to a process. With several workers on
    PostgreSQL every message to a chat first takes its turn from one fleet-wide allowance
    (`core.ports.Fleet.pace`), however unevenly the chats are spread over the workers; a group's 20 a
    minute stays per worker (a group's rounds rarely run on two workers at once, and a 429 holds that chat
    only). Alone, or while the database cannot be asked, a worker paces itself to its share, 30 / workers
    (the fleet's size is counted from heartbeats)."""

    __slots__ = ("_fleet", "_groups", "_inner", "_make", "_overall", "_share", "_unpaced")

    def __init__(
        self, fleet: Fleet, make: Callable[..., EaselRateLimiter] = rate_limiter, overall_per_second: float = 30
    ) -> None:
        self._fleet, self._make, self._overall = fleet, make, overall_per_second
        self._share = max(1, fleet.workers)
        self._inner = make(overall_per_second=overall_per_second / self._share)
        self._groups = make(overall_per_second=0)  # per-group buckets only: the fleet paces the rest
        self._unpaced = False  # the fleet's allowance could not be asked (logged once until it can again)

    @property
    def overall_per_second(self) -> float:
        """This worker's own share now (when the fleet's allowance is not used)."""
        return self._overall / self._share

    async def initialize(self) -> None:
        await self._inner.initialize()
        await self._groups.initialize()

    async def shutdown(self) -> None:
        await self._inner.shutdown()
        await self._groups.shutdown()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | JSONDict | list[JSONDict]:
        pace = self._fleet.pace
        if pace is not None and endpoint not in UNTHROTTLED and data.get("chat_id") is not None:
            try:
                wait = await pace(PACE_NAME, self._overall, self._overall)
            except Exception as error:
                if not self._unpaced:
                    log.warning("the fleet's Telegram allowance cannot be asked (%s); pacing this worker to its "
                                "share", type(error).__name__)
                self._unpaced = True
            else:
                self._unpaced = False
                if wait > 0:
                    await asyncio.sleep(wait)
                return await self._groups.process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
        workers = max(1, self._fleet.workers)
        if workers != self._share:
            self._share = workers
            self._inner = self._make(overall_per_second=self._overall / workers)
        return await self._inner.process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
