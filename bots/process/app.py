"""The composition root: the one place that builds the store, the provider, the cache and the studio, and
closes them in reverse order. `easel run`, `easel console` and the tests all build the graph here; tests
plug in fakes through the keyword arguments."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from core.desk import utcnow
from core.images import ImageProvider
from core.metrics import Metrics
from core.provider.cache import ImageCache
from core.settings import Settings
from core.store.sqlite import Store
from core.studio import Studio

log = logging.getLogger(__name__)


@dataclass
class Core:
    settings: Settings
    store: Store
    provider: ImageProvider
    cache: ImageCache
    metrics: Metrics
    studio: Studio
    recovered: int


@asynccontextmanager
async def open_core(
    settings: Settings,
    *,
    provider: ImageProvider | None = None,
    metrics: Metrics | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> AsyncIterator[Core]:
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store(settings.db_path))
        if provider is None:
            from core.provider.routes import build_provider

            provider = build_provider(settings)
        stack.push_async_callback(provider.aclose)
        cache = ImageCache(
            settings.image_dir,
            max_age_days=settings.image_cache_days,
            max_bytes=settings.image_cache_mb * 1024**2,
        )
        metrics = metrics or Metrics()
        studio = Studio(settings, store, provider, cache, metrics, clock=clock)
        recovered = await studio.start()
        pruner = asyncio.create_task(_prune_hourly(cache), name="easel-cache-prune")
        stack.push_async_callback(_cancel, pruner)
        yield Core(settings, store, provider, cache, metrics, studio, recovered)


async def _prune_hourly(cache: ImageCache) -> None:
    """Retention is enforced while Easel runs for months, not only at start-up."""
    while True:
        await asyncio.sleep(3600)
        try:
            await asyncio.to_thread(cache.prune)
        except OSError:
            log.exception("image cache prune failed")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
