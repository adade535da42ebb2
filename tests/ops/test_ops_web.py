"""The HTTP surface through a real aiohttp client on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bots.process.config import Settings
from bots.process.web import SECRET_HEADER, WebServer
from core.errors import ConfigError
from core.metrics import Metrics

Checks = dict[str, bool]


@asynccontextmanager
async def serving(
    settings: Settings,
    metrics: Metrics | None = None,
    checks: Checks | Callable[[], Awaitable[Checks]] | None = None,
    webhook: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
) -> AsyncIterator[tuple[WebServer, aiohttp.ClientSession, str]]:
    if callable(checks):
        readiness = checks
    else:
        fixed = checks or {}

        async def readiness() -> Checks:
            return dict(fixed)

    server = WebServer(settings, metrics or Metrics(), readiness, webhook)
    await server.start()
    try:
        async with aiohttp.ClientSession() as client:
            yield server, client, f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


@dataclass
class Reply:
    status: int
    text: str
    content_type: str

    def json(self) -> object:
        return json.loads(self.text)


async def call(client: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Reply:
    async with client.request(method, url, **kwargs) as response:
        return Reply(response.status, await response.text(), response.headers.get("Content-Type", ""))


async def test_healthz_is_ok(settings: Settings) -> None:
    async with serving(settings, checks={"telegram": False}) as (server, client, base):
        assert server.port > 0
        reply = await call(client, "GET", f"{base}/healthz")
        assert (reply.status, reply.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("checks", "status", "ready"),
    [
        ({"telegram": True, "discord": True, "database": True}, 200, True),
        ({"telegram": True, "discord": False, "database": True}, 503, False),
        ({"database": False}, 503, False),
    ],
)
async def test_readyz_reports_each_check(settings: Settings, checks: Checks, status: int, ready: bool) -> None:
    async with serving(settings, checks=checks) as (_, client, base):
        reply = await call(client, "GET", f"{base}/readyz")
    assert reply.status == status
    assert reply.json() == {"ready": ready, "checks": checks}


async def test_readyz_is_not_ready_when_the_check_itself_fails(settings: Settings) -> None:
    async def broken() -> Checks:
        raise RuntimeError("database locked")

    async with serving(settings, checks=broken) as (_, client, base):
        reply = await call(client, "GET", f"{base}/readyz")
    assert reply.status == 503
    assert reply.json() == {"ready": False, "checks": {}}


async def test_readiness_is_asked_on_every_request(settings: Settings) -> None:
    state = {"telegram": False}

    async def live() -> Checks:
        return dict(state)

    async with serving(settings, checks=live) as (_, client, base):
        assert (await call(client, "GET", f"{base}/readyz")).status == 503
        state["telegram"] = True
        assert (await call(client, "GET", f"{base}/readyz")).status == 200


async def test_metrics_exposition_counts(settings: Settings) -> None:
    metrics = Metrics()
    metrics.rounds.labels(platform="telegram", outcome="delivered").inc()
    metrics.rounds.labels(platform="telegram", outcome="delivered").inc()
    metrics.credits_spent.labels(platform="discord").inc(4)
    metrics.provider_latency.labels(route="responses").observe(3.2)
    metrics.queue_depth.set(5)
    async with serving(settings, metrics) as (_, client, base):
        reply = await call(client, "GET", f"{base}/metrics")
    assert reply.status == 200
    assert reply.content_type.startswith("text/plain; version=0.0.4")
    text = reply.text
    assert 'easel_rounds_total{outcome="delivered",platform="telegram"} 2.0' in text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("easel_credits_spent_total", (("platform", "discord"),))] == 4
    assert samples[("easel_provider_latency_seconds_count", (("route", "responses"),))] == 1
    assert samples[("easel_queue_depth", ())] == 5


async def test_metrics_openmetrics_on_request(settings: Settings) -> None:
    async with serving(settings) as (_, client, base):
        headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
        reply = await call(client, "GET", f"{base}/metrics", headers=headers)
    assert reply.content_type.startswith("application/openmetrics-text")
    assert reply.text.rstrip().endswith("# EOF")


async def test_webhook_delegates_to_the_handler(settings: Settings) -> None:
    received: list[dict[str, object]] = []

    async def webhook(request: web.Request) -> web.StreamResponse:
        received.append(await request.json())
        return web.json_response({"handled": True})

    async with serving(settings, webhook=webhook) as (_, client, base):
        reply = await call(client, "POST", f"{base}/telegram/webhook", json={"update_id": 7})
    assert (reply.status, reply.json()) == (200, {"handled": True})
    assert received == [{"update_id": 7}]


async def test_webhook_checks_the_secret_token(settings: Settings) -> None:
    received: list[object] = []

    async def webhook(request: web.Request) -> web.StreamResponse:
        received.append(await request.json())
        return web.Response()

    secured = replace(settings, telegram_webhook_secret="the-secret_123")
    async with serving(secured, webhook=webhook) as (_, client, base):
        url = f"{base}/telegram/webhook"
        assert (await call(client, "POST", url, json={"update_id": 1})).status == 403
        wrong = {SECRET_HEADER: "wrong"}
        assert (await call(client, "POST", url, json={"update_id": 2}, headers=wrong)).status == 403
        right = {SECRET_HEADER: "the-secret_123"}
        assert (await call(client, "POST", url, json={"update_id": 3}, headers=right)).status == 200
    assert received == [{"update_id": 3}]


async def test_no_webhook_route_without_a_handler(settings: Settings) -> None:
    async with serving(settings) as (_, client, base):
        reply = await call(client, "POST", f"{base}/telegram/webhook", json={"update_id": 7})
    assert reply.status == 404


async def test_port_in_use_names_the_setting(settings: Settings) -> None:
    async with serving(settings) as (first, _, _):
        taken = replace(settings, http_port=first.port)
        second = WebServer(taken, Metrics(), _ready)
        with pytest.raises(ConfigError, match="EASEL_HTTP_PORT"):
            await second.start()
        await second.stop()


async def _ready() -> Checks:
    return {}
