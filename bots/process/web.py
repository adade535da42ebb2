"""The operator's HTTP surface (aiohttp): liveness, readiness, Prometheus metrics, the Telegram webhook.

No access log: request lines can carry tokens (Telegram puts the secret in a header, not the path, but a
misconfigured proxy or a scanner may not), and health probes would flood the log anyway.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from bots.process.config import Settings
from core.errors import ConfigError
from core.metrics import Metrics

log = logging.getLogger(__name__)

Readiness = Callable[[], Awaitable[dict[str, bool]]]
WebhookHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret


class WebServer:
    """Use `await start()` / `await stop()`; `port` is the bound port (useful with port 0 in tests)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        readiness: Readiness,
        telegram_webhook: WebhookHandler | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._readiness = readiness
        self._telegram_webhook = telegram_webhook
        self._runner: web.AppRunner | None = None
        self.port = 0
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_text)
        if telegram_webhook is not None:
            app.router.add_post(WEBHOOK_PATH, self._webhook)
        self.app = app

    async def start(self) -> None:
        host = self._settings.http_host
        port = self._settings.http_port or 0
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"EASEL_HTTP_HOST/EASEL_HTTP_PORT: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("HTTP server listening on %s:%d (/healthz, /readyz, /metrics)", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        # Liveness only: the event loop answers. Dependencies belong to /readyz, so a platform outage does
        # not make a supervisor restart a healthy process.
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        try:
            checks = dict(await self._readiness())
        except Exception:
            log.exception("readiness check failed")
            return web.json_response({"ready": False, "checks": {}}, status=503)
        ready = all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def _metrics_text(self, request: web.Request) -> web.Response:
        # Content negotiation as the library does it: Prometheus text 0.0.4 unless the scraper asks for
        # OpenMetrics or a newer text version.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encode(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        assert self._telegram_webhook is not None  # the route exists only with a handler
        expected = self._settings.telegram_webhook_secret
        if expected:
            # Checked here too so no handler ever sees an unauthenticated update.
            given = request.headers.get(SECRET_HEADER, "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                log.warning("webhook call without the right secret token, from %s", request.remote)
                raise web.HTTPForbidden()
        return await self._telegram_webhook(request)
