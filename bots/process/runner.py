"""`easel run`: every bot whose token is set, in one process and one event loop, from the one composition
root; health and metrics over HTTP; a clean shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Protocol

from bots.process import backoff
from bots.process.app import Core, open_core
from bots.process.config import Settings
from bots.process.network import describe_network_error, is_network_error
from bots.process.summary import log_startup_summary
from bots.process.web import WebServer
from core.errors import ConfigError, FatalPlatformError
from core.events import Platform
from core.metrics import Metrics
from core.outcomes import RoundView
from core.records import Round

log = logging.getLogger("easel")

EX_CONFIG = 78  # sysexits: configuration error. The systemd unit does not restart on it (no hot loop).


class ChatAdapter(Protocol):
    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def view_for_round(self, item: Round) -> RoundView: ...


def check_runnable(settings: Settings) -> None:
    missing = []
    if not settings.openai_api_key:
        missing.append("OPENAI_API_KEY (the key for the image provider)")
    if not settings.telegram_token and not settings.discord_token:
        missing.append("TELEGRAM_TOKEN or DISCORD_TOKEN (at least one chat platform)")
    if missing:
        raise ConfigError("easel run needs " + " and ".join(missing) + ". Set it in the environment or in .env.")


async def run(settings: Settings) -> int:
    """Returns the process exit code: 0 after a clean shutdown, EX_CONFIG on a fatal platform error."""
    check_runnable(settings)
    stop = asyncio.Event()
    fatal: list[str] = []

    def on_fatal(message: str) -> None:
        fatal.append(message)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if await _backed_off(settings, stop):
            async with open_core(settings) as core:
                await _serve(settings, core, stop, fatal, on_fatal)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped")
    if fatal:
        await asyncio.to_thread(backoff.record_fatal, settings.data_dir)
        return EX_CONFIG
    return 0


async def _backed_off(settings: Settings, stop: asyncio.Event) -> bool:
    """Wait out the back-off after recent fatal exits; False if asked to stop meanwhile. While it waits,
    /healthz stays up (and /readyz says not ready), so a container health check does not kill the process and
    restart the loop the back-off exists to break."""
    wait = await asyncio.to_thread(backoff.delay_before_start, settings.data_dir)
    if not wait:
        return True
    log.warning("%s", backoff.waiting_message(wait, settings.data_dir))
    web = None
    if settings.http_port is not None:

        async def waiting() -> dict[str, bool]:
            return {"waiting_after_fatal_exit": False}

        web = WebServer(settings, Metrics(), waiting)
        await web.start()
    try:
        await asyncio.wait_for(stop.wait(), wait)
    except TimeoutError:
        return True
    finally:
        if web is not None:
            await web.stop()
    return False


async def _serve(
    settings: Settings, core: Core, stop: asyncio.Event, fatal: list[str], on_fatal: Callable[[str], None]
) -> None:
    adapters = _adapters(settings, core, on_fatal)
    web = _web(settings, core, adapters)
    try:
        if web is not None:
            await web.start()
        for name, adapter in adapters.items():
            try:
                await adapter.start()
            except Exception as error:
                if not is_network_error(error):
                    raise
                # One line naming the URL and what to check, not a traceback (the first hour on a new machine).
                url, setting = _platform_url(settings, name)
                raise FatalPlatformError(describe_network_error(error, url, setting)) from None
            log.info("%s bot connected", name)
            # Background rounds a restart interrupted are followed to their end through this platform now.
            resumed = await core.rounds.resume(Platform(name), adapter.view_for_round)
            if resumed:
                log.info("%s: following %d rounds the provider kept running across the restart", name, resumed)
        _summary(settings, core, list(adapters))
        log_startup_summary(log, settings, _telegram_username(adapters), _discord_app_id(adapters))
        await asyncio.to_thread(backoff.clear, settings.data_dir)
        await stop.wait()
    except FatalPlatformError as error:
        fatal.append(str(error))
    finally:
        await _shutdown(settings, core, adapters, web, fatal)


async def _shutdown(
    settings: Settings, core: Core, adapters: dict[str, ChatAdapter], web: WebServer | None, fatal: list[str]
) -> None:
    if fatal:
        log.error("stopping: %s", fatal[0])
    else:
        log.info("stopping: finishing running rounds (up to %g s)", settings.shutdown_grace)
    cancelled = await core.rounds.drain(settings.shutdown_grace)
    if cancelled:
        log.warning("%d rounds did not finish in time; refunded and their users told", cancelled)
    for name, adapter in adapters.items():
        try:
            await adapter.stop()
        except Exception:
            log.exception("%s bot did not stop cleanly", name)
    if web is not None:
        await web.stop()


def _adapters(settings: Settings, core: Core, on_fatal: Callable[[str], None]) -> dict[str, ChatAdapter]:
    adapters: dict[str, ChatAdapter] = {}
    if settings.telegram_token:
        from bots.telegram.bot import TelegramBot

        adapters["telegram"] = TelegramBot(settings, core.services, on_fatal=on_fatal)
    if settings.discord_token:
        from bots.discord.bot import DiscordBot

        adapters["discord"] = DiscordBot(settings, core.services, on_fatal=on_fatal)
    return adapters


def _web(settings: Settings, core: Core, adapters: dict[str, ChatAdapter]) -> WebServer | None:
    if settings.http_port is None:
        return None

    async def readiness() -> dict[str, bool]:
        checks = {"database": await core.store.writable()}
        checks.update({name: adapter.ready for name, adapter in adapters.items()})
        return checks

    webhook = None
    telegram = adapters.get("telegram")
    if telegram is not None and settings.telegram_webhook_url:
        webhook = telegram.handle_webhook  # type: ignore[attr-defined]
    return WebServer(settings, core.metrics, readiness, telegram_webhook=webhook)


def _platform_url(settings: Settings, name: str) -> tuple[str, str]:
    if name == "telegram":
        return settings.telegram_api_url, "EASEL_TELEGRAM_API_URL"
    return settings.discord_api_url, "EASEL_DISCORD_API_URL"


def _telegram_username(adapters: dict[str, ChatAdapter]) -> str | None:
    app = getattr(adapters.get("telegram"), "application", None)
    return getattr(getattr(app, "bot", None), "username", None) if app is not None else None


def _discord_app_id(adapters: dict[str, ChatAdapter]) -> str | None:
    adapter = adapters.get("discord")
    if adapter is None:
        return None
    client = getattr(adapter, "_client", None)
    app_id = getattr(client, "application_id", None)
    return str(app_id) if app_id else None


def _summary(settings: Settings, core: Core, bots: list[str]) -> None:
    route = "Responses API" if settings.image_api == "responses" else "Images API"
    host = f" hosted by {settings.host_model}" if settings.image_api == "responses" else ""
    log.info(
        "Easel is running: bots=%s, provider=%s (%s%s) at %s, data=%s, %d credits/user/day, http=%s",
        ",".join(bots),
        settings.image_model,
        route,
        host,
        settings.openai_base_url or "the SDK's default endpoint",
        settings.data_dir.resolve(),
        settings.daily_credits,
        f"{settings.http_host}:{settings.http_port}" if settings.http_port is not None else "off",
    )
    if core.recovered:
        log.warning("%d rounds from the previous run were refunded at start-up", core.recovered)
