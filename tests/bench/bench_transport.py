"""CPU per Bot API call of python-telegram-bot's request classes, and of the rate limiter: `python -m
tests.bench.bench_transport [--calls 2000] [--concurrency 100] [--runs 3]`.

The fake Bot API (tests/fakes/fake_telegram.py) runs in a child process, so the CPU measured here
(`time.process_time` of this process) is the client's alone: PTB (building the request, parsing the answer) plus
the transport. Each run sends `--calls` sendMessage calls through a real `telegram.Bot`, `--concurrency` at a time,
to distinct private chats; the transports take turns run by run, after a warm-up, and the median run is reported.

Rows:
- `null`: a request class that answers every call from memory without touching the network: PTB's own floor.
- `httpx`: PTB's default `HTTPXRequest` (httpx 0.28 on httpcore 1.0.9).
- `httpx2`: the same code on the httpx2 fork (only when `httpx2` is installed).
- `aiohttp`: Easel's `bots.telegram.transport.AiohttpRequest`.
- `aiohttp+limiter`: the same with Easel's rate limiter in front (its rates raised so it never waits: what is
  measured is its bookkeeping, not its throttling).
Then the limiter alone: `process_request` around a no-op call, for a private chat (the overall bucket) and a group
(group + overall buckets).

Prints figures only; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from telegram import Bot
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.ext import ExtBot
from telegram.request import BaseRequest, HTTPXRequest, RequestData

from bots.telegram.transport import AiohttpRequest, rate_limiter

TOKEN = "999000:BENCH-token_abc"  # the fake's (made-up) token


# -- the fake, in its own process ---------------------------------------------------------------------------


def _serve(conn: Any, chats: int) -> None:
    async def main() -> None:
        from tests.fakes.fake_telegram import FakeTelegram

        async with FakeTelegram(token=TOKEN) as fake:
            ids = [fake.private_chat(fake.user(f"u{n}"))["id"] for n in range(chats)]
            ids += [fake.group_chat(f"g{n}")["id"] for n in range(4)]
            conn.send((fake.base_url, ids))
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop

    asyncio.run(main())


# -- request classes ----------------------------------------------------------------------------------------


class NullRequest(BaseRequest):
    """Answers from memory: what PTB itself costs per call."""

    def __init__(self) -> None:
        self._message = json.dumps({"ok": True, "result": {
            "message_id": 1, "date": 0, "chat": {"id": 1, "type": "private", "first_name": "u"},
            "from": {"id": 999000, "is_bot": True, "first_name": "Easel", "username": "easel_bot"}, "text": "hi",
        }}).encode()
        self._me = json.dumps({"ok": True, "result": {"id": 999000, "is_bot": True, "first_name": "Easel",
                                                      "username": "easel_bot"}}).encode()

    @property
    def read_timeout(self) -> float | None:
        return 5.0

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                         pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE) -> tuple[int, bytes]:
        if request_data is not None:
            request_data.json_parameters  # noqa: B018 - PTB's encoding, as a real transport does it
        return 200, (self._me if url.endswith("/getMe") else self._message)


def httpx2_request(pool: int) -> BaseRequest | None:
    """PTB's HTTPXRequest logic on the httpx2 fork (a bench-only copy), or None when httpx2 is missing."""
    try:
        import httpx2
    except ImportError:
        return None

    class Httpx2Request(BaseRequest):
        def __init__(self) -> None:
            self._timeout = httpx2.Timeout(connect=5.0, read=5.0, write=5.0, pool=1.0)
            self._client = httpx2.AsyncClient(timeout=self._timeout, limits=httpx2.Limits(max_connections=pool))

        @property
        def read_timeout(self) -> float | None:
            return self._timeout.read

        async def initialize(self) -> None:
            pass

        async def shutdown(self) -> None:
            await self._client.aclose()

        async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                             read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                             write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                             connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
                             pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE) -> tuple[int, bytes]:
            files = request_data.multipart_data if request_data else None
            data = request_data.json_parameters if request_data else None
            base = self._timeout
            timeout = httpx2.Timeout(
                connect=base.connect if isinstance(connect_timeout, DefaultValue) else connect_timeout,
                read=base.read if isinstance(read_timeout, DefaultValue) else read_timeout,
                write=base.write if isinstance(write_timeout, DefaultValue) else write_timeout,
                pool=base.pool if isinstance(pool_timeout, DefaultValue) else pool_timeout,
            )
            try:
                res = await self._client.request(method=method, url=url, headers={"User-Agent": self.USER_AGENT},
                                                 timeout=timeout, files=files, data=data)
            except httpx2.TimeoutException as err:
                raise TimedOut from err
            except httpx2.HTTPError as err:
                raise NetworkError(f"httpx2.{err.__class__.__name__}") from err
            return res.status_code, res.content

    return Httpx2Request()


def _required(request: BaseRequest | None) -> BaseRequest:
    assert request is not None
    return request


def transports(pool: int) -> dict[str, Callable[[], tuple[BaseRequest, bool]]]:
    """name -> factory of (request, with limiter)."""
    made: dict[str, Callable[[], tuple[BaseRequest, bool]]] = {
        "null": lambda: (NullRequest(), False),
        "httpx": lambda: (HTTPXRequest(connection_pool_size=pool, pool_timeout=5.0), False),
    }
    probe = httpx2_request(pool)
    if probe is not None:
        made["httpx2"] = lambda: (_required(httpx2_request(pool)), False)
    made["aiohttp"] = lambda: (AiohttpRequest(connection_pool_size=pool, pool_timeout=5.0), False)
    made["aiohttp+limiter"] = lambda: (AiohttpRequest(connection_pool_size=pool, pool_timeout=5.0), True)
    return made


# -- runs ---------------------------------------------------------------------------------------------------


async def one_run(base_url: str, chats: Sequence[int], request: BaseRequest, limiter: bool, calls: int,
                  concurrency: int) -> dict[str, float]:
    bot: Bot
    if limiter:
        bot = ExtBot(TOKEN, base_url=base_url, request=request, get_updates_request=NullRequest(),
                     rate_limiter=rate_limiter(overall_per_second=1_000_000, group_per_period=1_000_000))
    else:
        bot = Bot(TOKEN, base_url=base_url, request=request, get_updates_request=NullRequest())
    async with bot:
        sem = asyncio.Semaphore(concurrency)

        async def send(n: int) -> None:
            async with sem:
                await bot.send_message(chats[n % len(chats)], f"message {n}")

        await asyncio.gather(*(send(n) for n in range(min(200, calls))))  # warm: connections open, caches hot
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(send(n) for n in range(calls)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms_per_call": cpu * 1000 / calls, "calls_per_s": calls / wall}


async def limiter_alone(calls: int, group: int) -> dict[str, float]:
    limiter = rate_limiter(overall_per_second=1_000_000, group_per_period=1_000_000)

    async def noop() -> bool:
        return True

    out: dict[str, float] = {}
    for label, chat in (("private", 12345), ("group", group)):
        for _ in range(2):  # the first pass warms up
            cpu = time.process_time()
            for _ in range(calls):
                await limiter.process_request(noop, (), {}, "sendMessage", {"chat_id": chat}, None)
            spent = time.process_time() - cpu
        base = time.process_time()
        for _ in range(calls):
            await noop()
        floor = time.process_time() - base
        out[f"{label}_us_per_call"] = (spent - floor) * 1e6 / calls
    return out


async def bench(base_url: str, chats: Sequence[int], *, calls: int, concurrency: int, runs: int) -> dict[str, Any]:
    made = transports(pool=256)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in made}
    for _ in range(runs):
        for name, factory in made.items():  # take turns, run by run
            request, limiter = factory()
            results[name].append(await one_run(base_url, chats, request, limiter, calls, concurrency))
    table = {}
    for name, rows in results.items():
        cpu = sorted(r["cpu_ms_per_call"] for r in rows)
        table[name] = {"cpu_ms_per_call": statistics.median(cpu), "min": cpu[0], "max": cpu[-1],
                       "calls_per_s": statistics.median(r["calls_per_s"] for r in rows)}
    group = next(c for c in chats if c < 0)
    return {"transports": table, "limiter_alone": await limiter_alone(100_000, group)}


def machine() -> str:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} vCPU {model}, Python {platform.python_version()}, {platform.system()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(child, 500), daemon=True)
    server.start()
    try:
        base_url, chats = parent.recv()
        figures = asyncio.run(bench(base_url, chats, calls=args.calls, concurrency=args.concurrency,
                                    runs=args.runs))
    finally:
        parent.send("stop")
        server.join(10)
    import aiohttp
    import httpcore
    import httpx

    print(f"Telegram transports: {args.calls} sendMessage calls, {args.concurrency} at once, median of {args.runs}"
          f" runs; client CPU only (the fake Bot API runs in another process)")
    print(f"machine: {machine()}; aiohttp {aiohttp.__version__}, httpx {httpx.__version__}, "
          f"httpcore {httpcore.__version__}")
    print(f"  {'transport':<18}{'CPU ms/call':>12}{'(min-max)':>16}{'calls/s':>10}")
    for name, row in figures["transports"].items():
        spread = f"{row['min']:.3f}-{row['max']:.3f}"
        print(f"  {name:<18}{row['cpu_ms_per_call']:>12.3f}{spread:>16}{row['calls_per_s']:>10.0f}")
    alone = figures["limiter_alone"]
    print(f"  rate limiter alone: {alone['private_us_per_call']:.1f} µs/call (private chat), "
          f"{alone['group_us_per_call']:.1f} µs/call (group)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
