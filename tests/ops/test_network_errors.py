"""A network failure at start-up is one line naming the URL and what to check (real failures on 127.0.0.1
where the platform's own client library raises them, synthetic ones for DNS, which needs no network)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from bots.process.network import describe_network_error, is_network_error, shown_url

TOKEN = "7312450983:AAHk2Zb9xQ-3mLpR7vT_wYc4dNe8fGh1jKs"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def plain_server() -> AsyncIterator[int]:
    """A TCP server that answers plain HTTP: a TLS client's handshake fails against it."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    async with server:
        yield port


async def test_refused_with_httpx_names_the_url_without_the_token() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(httpx.ConnectError) as caught:
        async with httpx.AsyncClient() as client:
            await client.post(f"{url}/bot{TOKEN}/getMe")
    line = describe_network_error(caught.value, f"{url}/bot{TOKEN}/getMe", "EASEL_TELEGRAM_API_URL")
    assert line.startswith(f"cannot reach {url}/bot[redacted]/getMe (EASEL_TELEGRAM_API_URL): the connection was")
    assert "refused" in line and "host and port" in line and TOKEN not in line and "\n" not in line
    assert is_network_error(caught.value)


async def test_refused_with_aiohttp() -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/v10"
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        async with aiohttp.ClientSession() as session:
            await session.get(f"{url}/users/@me")
    assert "the connection was refused" in describe_network_error(caught.value, url)


async def test_tls_against_a_plain_server(plain_server: int) -> None:
    url = f"https://127.0.0.1:{plain_server}"
    with pytest.raises(httpx.ConnectError) as caught:
        async with httpx.AsyncClient() as client:
            await client.get(url)
    line = describe_network_error(caught.value, url)
    assert "TLS handshake failed" in line and "https://" in line


def test_dns_certificate_timeout_and_unreachable() -> None:
    dns = httpx.ConnectError("[Errno -2] Name or service not known")
    dns.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert "does not resolve (DNS)" in describe_network_error(dns, "https://api.telegram.org")
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert "certificate could not be verified" in describe_network_error(cert, "https://discord.com/api/v10")
    assert "did not answer in time" in describe_network_error(httpx.ConnectTimeout("timed out"), "https://x.example")
    unreachable = OSError(101, "Network is unreachable")
    assert "network is unreachable" in describe_network_error(unreachable, "https://x.example")
    assert not is_network_error(ValueError("not a network problem"))


def test_the_url_shown_drops_credentials_and_query() -> None:
    assert shown_url("https://user:pa55@proxy.example:8443/v1?api-key=k") == "https://proxy.example:8443/v1"
    assert shown_url(f"https://api.telegram.org/bot{TOKEN}/getMe") == "https://api.telegram.org/bot[redacted]/getMe"
