"""The provider's HTTP client: the OpenAI SDK's aiohttp-based client (`openai.DefaultAioHttpClient`), which
costs the bot about half the CPU per call of the SDK's default HTTP stack (docs/benchmarks-transport.md).

The SDK's adapter translates aiohttp's exceptions coarsely: a refused connection or a server that hung up
comes out as a connect *timeout*, which Easel would tell a user as "the provider timed out" and never
retry. `EaselHttpClient` puts a thin layer over each of its transports (the direct one and those for the
environment's proxies) that translates them as the SDK's default client would: a refused or unresolvable
connection is a `ConnectError` (safe to retry), a server that hung up a `RemoteProtocolError` (the request
may have reached it), a stalled read a `ReadTimeout`.

Proxies: the client still reads `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` from the
environment (the SDK's client resolves them and gives each proxy its own transport); aiohttp speaks to
`http://` and `https://` proxies, not SOCKS ones."""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx2
import openai

# aiohttp exception -> the httpx2 exception the SDK's default transport raises for the same failure; the
# first match wins, so subclasses come before their bases.
TRANSLATION: tuple[tuple[type[BaseException], type[httpx2.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx2.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx2.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx2.ReadTimeout),
    (aiohttp.ClientProxyConnectionError, httpx2.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx2.ProxyError),
    (aiohttp.ClientConnectorError, httpx2.ConnectError),  # refused, unresolvable, TLS handshake
    (aiohttp.ServerDisconnectedError, httpx2.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx2.RemoteProtocolError),  # the body broke off
    (aiohttp.ClientConnectionError, httpx2.ReadError),  # reset, OS errors on an open connection
    (aiohttp.NonHttpUrlClientError, httpx2.UnsupportedProtocol),
    (aiohttp.InvalidURL, httpx2.UnsupportedProtocol),
    (aiohttp.ClientResponseError, httpx2.RemoteProtocolError),  # an answer aiohttp could not parse
    (aiohttp.ClientError, httpx2.NetworkError),
)


def translated(exc: BaseException) -> httpx2.TransportError | None:
    """The httpx2 exception for an aiohttp one (raw, or wrapped by the SDK's adapter), None for others."""
    cause = exc.__cause__ if isinstance(exc, httpx2.TransportError) else exc
    if cause is None:
        return None
    for source, target in TRANSLATION:
        if isinstance(cause, source):
            return target(str(cause) or type(cause).__name__)
    return None


@contextmanager
def translating() -> Iterator[None]:
    try:
        yield
    except (httpx2.TransportError, aiohttp.ClientError) as exc:
        better = translated(exc)
        if better is None:
            raise
        cause = exc.__cause__ if isinstance(exc, httpx2.TransportError) else exc
        raise better from cause


class _Body(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # The adapter's body is an async generator too: closed here when this one is, in the same task, not
        # left to the garbage collector (core.provider.sse says why that matters).
        chunks = self._inner.__aiter__()
        try:
            with translating():
                async for chunk in chunks:
                    yield chunk
        finally:
            if isinstance(chunks, AsyncGenerator):
                with translating():
                    await chunks.aclose()

    async def aclose(self) -> None:
        with translating():
            await self._inner.aclose()


class TranslatingTransport(httpx2.AsyncBaseTransport):
    """Wraps one of the SDK adapter's aiohttp transports; requests and bodies pass through unchanged."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        with translating():
            response = await self.inner.handle_async_request(request)
        stream = response.stream
        assert isinstance(stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Body(stream),
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class EaselHttpClient(openai.DefaultAioHttpClient):
    """`openai.DefaultAioHttpClient` (the SDK's defaults, aiohttp underneath) with exceptions translated."""

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        if kwargs.get("transport") is not None:
            return super()._init_transport(*args, **kwargs)
        return TranslatingTransport(super()._init_transport(*args, **kwargs))

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        return TranslatingTransport(super()._init_proxy_transport(*args, **kwargs))


def http_client(
    *,
    timeout: httpx2.Timeout,
    max_connections: int,
    verify: ssl.SSLContext | bool = True,
) -> httpx2.AsyncClient:
    """The provider's HTTP client. `max_connections` bounds open connections to the provider (aiohttp keeps
    idle ones up to that bound, for the keep-alive expiry)."""
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return EaselHttpClient(timeout=timeout, limits=limits, verify=verify)
