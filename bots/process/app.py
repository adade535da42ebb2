"""The composition root: the one place that builds the store, the provider, the image store and the
services, and closes them in reverse order. `easel run`, `easel console` and the tests all build the graph
here; tests plug in fakes through the keyword arguments."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from bots.process.leader import SharedInbox, StoreLeadership
from bots.process.lock import hold_data_dir
from core.desk import Desk
from core.generation import Deps
from core.guards import LocalCap
from core.inbox import Inbox
from core.metrics import Metrics
from core.notices import Notices
from core.people import People
from core.ports import Clock, Fleet, FleetStore, ImageProvider, InboxPort, Services, Slots, Store, UserCap
from core.provider.cache import ImageCache
from core.rounds import RoundService
from core.settings import Settings
from core.shared_caps import SharedCap
from core.shared_slots import SharedSlots
from core.slots import FairSlots

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0  # seconds between passes of the image cache's retention


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Core:
    settings: Settings
    store: Store
    provider: ImageProvider
    cache: ImageCache
    metrics: Metrics
    services: Services
    rounds: RoundService
    desk: Desk
    recovered: int


def worker_id(settings: Settings) -> str:
    return getattr(settings, "worker_id", None) or f"{socket.gethostname()}-{os.getpid()}"


@asynccontextmanager
async def open_core(
    settings: Settings,
    *,
    provider: ImageProvider | None = None,
    metrics: Metrics | None = None,
    clock: Clock = utcnow,
    store: Store | None = None,
) -> AsyncIterator[Core]:
    async with AsyncExitStack() as stack:
        if store is None:
            store = await _open_store(settings, stack)
        if provider is None:
            from core.provider.factory import build_provider

            provider = build_provider(settings)
        stack.push_async_callback(provider.aclose)
        cache = _image_store(settings, stack)
        metrics = metrics or Metrics()
        worker = worker_id(settings)
        # On SQLite this process holds the data directory alone: every open round is an orphan at once.
        shared = bool(getattr(settings, "database_url", None))
        slots, caps, inbox = await _fleet(settings, store, worker, clock, stack, shared)
        deps = Deps(settings, store, provider, cache, metrics, clock, slots, caps)
        people = People(settings, store, clock)
        rounds = RoundService(deps, people, worker)
        desk = Desk(settings, store, people, clock)
        services = Services(rounds=rounds, desk=desk, notices=Notices(store, clock), inbox=inbox)
        recovered = await rounds.start(settings.takeover_after if shared else 0.0)
        await asyncio.to_thread(cache.prune)
        fleet = services.fleet
        if shared and isinstance(store, FleetStore):
            fleet.workers = max(1, await store.live_workers(clock(), settings.takeover_after))
            fleet.pace = store.pace
        upkeep = asyncio.create_task(_upkeep(settings, cache, rounds, store, worker, fleet), name="easel-upkeep")
        stack.push_async_callback(_cancel, upkeep)
        yield Core(settings, store, provider, cache, metrics, services, rounds, desk, recovered)


async def _fleet(
    settings: Settings, store: Store, worker: str, clock: Clock, stack: AsyncExitStack, shared: bool
) -> tuple[Slots, UserCap, InboxPort]:
    """One process: the in-process fair gate, per-user cap and plain inbox. Several workers on PostgreSQL: the
    provider cap, its queue and places shared by the fleet (`SharedSlots`), the per-user cap counted over
    the fleet (`SharedCap`), the inbox claimed by every worker and polled by one leader
    (`bots.process.leader`)."""
    if not shared or not isinstance(store, FleetStore):
        slots = FairSlots(settings.provider_concurrency, settings.queue_limit)
        return slots, LocalCap(settings.user_concurrency), Inbox(store, clock)
    stale = settings.takeover_after
    shared_slots = SharedSlots(store, worker, settings.provider_concurrency, settings.queue_limit, clock, stale)
    await shared_slots.start()
    stack.push_async_callback(shared_slots.close)
    caps = SharedCap(store, worker, settings.user_concurrency, clock, stale)
    await caps.start()
    stack.push_async_callback(caps.close)
    leadership = StoreLeadership(store, "telegram-poll")
    stack.push_async_callback(leadership.close)
    return shared_slots, caps, SharedInbox(store, store, clock, worker, leadership, stale)


def _image_store(settings: Settings, stack: AsyncExitStack) -> ImageCache:
    """Images live where every worker can read them: in PostgreSQL when it is the store (a worker never
    depends on another worker's disk), else in the data directory."""
    age, size = settings.image_cache_days, settings.image_cache_mb * 1024**2
    url = getattr(settings, "database_url", None)
    if url:
        from core.store.pg_images import PgImageStore

        shared = PgImageStore(url, max_age_days=age, max_bytes=size)
        stack.callback(shared.close)
        return cast(ImageCache, shared)  # the same put/get/delete/prune surface
    return ImageCache(settings.image_dir, max_age_days=age, max_bytes=size)


async def _open_store(settings: Settings, stack: AsyncExitStack) -> Store:
    url = getattr(settings, "database_url", None)
    if url:
        from core.store import open_store

        return await stack.enter_async_context(open_store(url, settings.data_dir))
    from core.store.sqlite import SqliteStore

    stack.enter_context(hold_data_dir(settings.data_dir))
    return await stack.enter_async_context(SqliteStore(settings.db_path))


async def _upkeep(
    settings: Settings, cache: ImageCache, rounds: RoundService, store: Store, worker: str, fleet: Fleet
) -> None:
    """Heartbeats (so other workers know this one lives), taking over a dead worker's rounds, counting the
    live workers (adapters split per-bot limits between them), and the image cache's retention, while Easel
    runs for months. Three heartbeats fit in the takeover time, so one lost write does not look like death."""
    clock, stale = rounds.deps.clock, float(settings.takeover_after)
    beat = stale / 3
    pruned = asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(beat)
        try:
            await store.heartbeat(worker, clock())
            await rounds.adopt(stale)
            if isinstance(store, FleetStore):
                fleet.workers = max(1, await store.live_workers(clock(), stale))
            if asyncio.get_running_loop().time() - pruned >= PRUNE_EVERY:
                pruned = asyncio.get_running_loop().time()
                await asyncio.to_thread(cache.prune)
        except Exception:
            log.exception("upkeep failed; trying again in %g s", beat)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
