"""One worker process of `test_pg_multiprocess.py`: opens the shared PostgreSQL store (racing the others'
migrations), runs round lives concurrently (double reserves, deliveries, failures, and cancelling rounds of
other processes), and prints one JSON line per charge or refund it saw succeed."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Coroutine
from dataclasses import replace

from core.errors import DuplicateRequest, OverQuota, StoreError
from core.events import ChannelKey, Platform
from core.records import Balance, Facts, RoundState
from core.store.postgres import PostgresStore
from tests.store.support import NOW, new_round, reservation

DAILY = 12


async def life(store: PostgresStore, key: ChannelKey, rng: random.Random, tag: str) -> list[dict[str, object]]:
    seen: list[dict[str, object]] = []
    made = await store.create_round(replace(new_round(f"u{rng.randrange(3)}", key=key), idem_key=tag), NOW)
    cost = rng.randint(1, 3)
    tries = [store.reserve(reservation(made.id, cost, default_daily=DAILY)) for _ in range(rng.choice((1, 2)))]
    for result in await asyncio.gather(*tries, return_exceptions=True):
        if isinstance(result, Balance):
            seen.append({"round": made.id, "reserved": cost})
        elif isinstance(result, StoreError) and "not requested" in str(result):
            pass  # another process cancelled the round before it was reserved: nothing charged
        elif not isinstance(result, OverQuota | DuplicateRequest):
            raise result
    if not seen:
        await store.finish(made.id, RoundState.REFUSED, "over_quota", NOW)
        return seen
    await store.transition(made.id, RoundState.RUNNING, NOW)
    ending = rng.choice(("deliver", "fail", "race", "open"))
    ends: list[Coroutine[object, object, object]] = []
    if ending in ("deliver", "race"):
        ends.append(store.deliver(made.id, key, [f"m{made.id}"], Facts(est_usd=0.01), NOW))
    if ending in ("fail", "race"):
        ends.append(store.finish(made.id, RoundState.FAILED, "provider", NOW))
        ends.append(store.finish(made.id, RoundState.CANCELLED, "cancelled", NOW))
    for value in await asyncio.gather(*ends):
        if isinstance(value, int) and value:
            seen.append({"round": made.id, "refunded": value})
    return seen


async def cancel_someone(store: PostgresStore) -> list[dict[str, object]]:
    """Cancel an open round, perhaps another process's, racing its owner."""
    open_now = await store.open_rounds()
    if not open_now:
        return []
    target = random.choice(open_now)
    refunded = await store.finish(target.id, RoundState.CANCELLED, "moderator", NOW)
    return [{"round": target.id, "refunded": refunded}] if refunded else []


async def main(url: str, community: str, worker: int, rounds: int) -> None:
    rng = random.Random(worker)
    key = ChannelKey(Platform.TELEGRAM, community, community)
    async with PostgresStore(url, max_size=4) as store:
        tasks = [life(store, key, rng, f"{community}-{worker}-{i}") for i in range(rounds)]
        tasks += [cancel_someone(store) for _ in range(rounds // 4)]
        for seen in await asyncio.gather(*tasks):
            for line in seen:
                print(json.dumps(line))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
