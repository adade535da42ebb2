"""The provider's HTTP client: `build_provider` runs the SDK on its aiohttp-based client (not the httpx2 default),
with room for every call in flight, aiohttp's exceptions translated as the default client would raise them,
and the environment's proxies honoured."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import aiohttp
import httpx2
import pytest
from aiohttp import web
from openai import AsyncOpenAI
from openai._vendor.httpx_aiohttp import AiohttpTransport

from core.errors import ProviderBusy
from core.provider.factory import build_provider, max_connections
from core.provider.images_api import ImagesProvider
from core.provider.responses import ResponsesProvider
from core.provider.transport import EaselHttpClient, TranslatingTransport, translated
from core.settings import CoreSettings
from tests.fakes.fake_openai import FakeOpenAI, color, pixel
from tests.provider.support import ignore_partials, job


def sdk_of(provider: object) -> AsyncOpenAI:
    assert isinstance(provider, ImagesProvider | ResponsesProvider)
    client = provider._client
    assert isinstance(client, AsyncOpenAI)
    return client


def aiohttp_inner(transport: object) -> AiohttpTransport:
    assert isinstance(transport, TranslatingTransport), type(transport)
    assert isinstance(transport.inner, AiohttpTransport), type(transport.inner)
    return transport.inner


@pytest.mark.parametrize("route", ["images", "responses"])
async def test_build_provider_runs_on_the_aiohttp_client(route: str) -> None:
    # Pinned: going back to the SDK's default client (httpx2 on httpcore2) doubles the CPU per call.
    provider = build_provider(CoreSettings(openai_api_key="sk-x", image_api=route))
    try:
        http = sdk_of(provider)._client
        assert isinstance(http, EaselHttpClient)
        assert not isinstance(http._transport, httpx2.AsyncHTTPTransport)
        aiohttp_inner(http._transport)
    finally:
        await provider.aclose()


@pytest.mark.parametrize("concurrency", [1, 8, 100, 1000])
async def test_the_connection_limit_covers_every_call_in_flight(concurrency: int) -> None:
    settings = CoreSettings(openai_api_key="sk-x", provider_concurrency=concurrency)
    provider = build_provider(settings)
    try:
        limits = aiohttp_inner(sdk_of(provider)._client._transport).limits
        assert limits.max_connections is not None
        assert limits.max_connections >= max_connections(settings) >= 2 * concurrency
    finally:
        await provider.aclose()


async def test_timeouts_are_the_settings(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.origin}/v1")
    settings = CoreSettings(openai_api_key="sk-x", image_api="images", partial_images=0, provider_timeout=77.0)
    provider = build_provider(settings)
    try:
        timeout = sdk_of(provider).timeout
        assert isinstance(timeout, httpx2.Timeout)
        assert (timeout.connect, timeout.read, timeout.pool) == (10.0, 77.0, 77.0)
        result = await provider.create(job(), ignore_partials)
    finally:
        await provider.aclose()
    assert pixel(result.image) == color(1)
    assert fake.calls_to("POST /v1/images/generations")[0].headers["x-stainless-read-timeout"] == "77.0"


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ServerDisconnectedError(), httpx2.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut short"), httpx2.RemoteProtocolError),
        (aiohttp.SocketTimeoutError("read"), httpx2.ReadTimeout),
        (aiohttp.ConnectionTimeoutError("connect"), httpx2.ConnectTimeout),
        (aiohttp.ClientOSError(104, "reset"), httpx2.ReadError),
    ],
)
def test_aiohttp_failures_read_as_the_default_client_raises_them(
    raised: Exception, expected: type[httpx2.TransportError]
) -> None:
    # The SDK's adapter says ConnectTimeout for any dropped connection: Easel would call it a timeout.
    wrapped = httpx2.ConnectTimeout("as the adapter says")
    wrapped.__cause__ = raised
    for exc in (raised, wrapped):
        better = translated(exc)
        assert type(better) is expected, (exc, better)


def test_other_exceptions_are_left_alone() -> None:
    assert translated(ValueError("not a transport failure")) is None
    assert translated(httpx2.ReadTimeout("no cause")) is None


# ---- proxies from the environment ----------------------------------------------------------------------------


class ForwardProxy:
    """A plain HTTP forward proxy on 127.0.0.1 that records the URLs it forwarded."""

    def __init__(self) -> None:
        self.forwarded: list[str] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._forward)
        self.origin = ""

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        url = str(request.url)
        self.forwarded.append(url)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-connection")}
        data = await request.read()
        async with (
            aiohttp.ClientSession() as session,
            session.request(request.method, url, headers=headers, data=data) as answer,
        ):
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "x-request-id")}
            return web.Response(status=answer.status, body=body, headers=kept)


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    forward = ForwardProxy()
    runner = web.AppRunner(forward.app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = cast(asyncio.Server | None, site._server)
    assert server is not None and server.sockets
    forward.origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield forward
    await runner.cleanup()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


async def images_call(fake: FakeOpenAI) -> ImagesProvider:
    settings = CoreSettings(
        openai_api_key="sk-x", openai_base_url=f"{fake.origin}/v1", image_api="images", partial_images=0
    )
    provider = build_provider(settings)
    assert isinstance(provider, ImagesProvider)
    try:
        result = await provider.create(job(), ignore_partials)
    finally:
        await provider.aclose()
    assert pixel(result.image) == color(1)
    return provider


async def test_http_proxy_from_the_environment_is_used(
    fake: FakeOpenAI, proxy: ForwardProxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", proxy.origin)

    await images_call(fake)

    assert proxy.forwarded == [f"{fake.origin}/v1/images/generations"]


async def test_no_proxy_from_the_environment_goes_direct(
    fake: FakeOpenAI, proxy: ForwardProxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", proxy.origin)
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")

    await images_call(fake)

    assert proxy.forwarded == []
    assert len(fake.calls_to("POST /v1/images/generations")) == 1


async def test_a_proxy_that_refuses_is_unreachable_not_a_timeout(
    fake: FakeOpenAI, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens on the discard port
    settings = CoreSettings(
        openai_api_key="sk-x",
        openai_base_url=f"{fake.origin}/v1",
        image_api="images",
        partial_images=0,
        provider_retries=0,
    )
    provider = build_provider(settings)
    try:
        with pytest.raises(ProviderBusy) as caught:
            await provider.create(job(), ignore_partials)
    finally:
        await provider.aclose()
    assert caught.value.msg_id == "provider.unreachable"
    assert fake.calls_to("POST /v1/images/generations") == []
