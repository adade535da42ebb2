"""CPU per image call of the OpenAI SDK on each HTTP client: `python -m tests.bench.bench_provider_transport
[--calls 1000] [--concurrency 100] [--runs 5] [--realistic]`.

The fake OpenAI runs in a child process and answers every `images.generate` at once, with a pre-encoded image
(a 100-byte PNG, or with `--realistic` the closed loop's 1-3 MB ones), so the CPU measured here
(`time.process_time` of this process) is the client's alone: the SDK building the request and parsing the
answer, plus the transport, plus (as Easel does) decoding the image's base64. The clients take turns run by run,
after a warm-up that opens the connections; the median run is reported with the range.

Clients:
- `httpx2`: the SDK's default (`openai.DefaultAsyncHttpxClient`: httpx2 on httpcore2 and anyio).
- `aiohttp (SDK)`: `openai.DefaultAioHttpClient` as the SDK ships it.
- `aiohttp (Easel)`: `core.provider.transport.http_client`, the same with Easel's exception translation.

Prints figures only; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx2
import openai
from openai import AsyncOpenAI

from core.provider.transport import http_client
from core.provider.uploads import decode_off_loop
from tests.bench._harness import machine_line

KEY = "sk-bench-not-a-key-0123456789"


def _serve(conn: Any, realistic: bool) -> None:
    async def main() -> None:
        from aiohttp import web

        from tests.bench.bench_closed_loop import realistic_images, small_png
        from tests.fakes.fake_openai import FakeOpenAI, Fault

        images = realistic_images() if realistic else [small_png(i) for i in range(3)]
        pool = [base64.b64encode(image).decode("ascii") for image in images]

        class InstantOpenAI(FakeOpenAI):
            served = 0

            def record(self, call: Any) -> None:
                return None  # keep nothing: thousands of calls

            async def _images_answer(
                self,
                request: web.Request,
                request_id: str,
                params: dict[str, Any],
                fault: Fault | None,
                prefix: str,
                input_images: int,
            ) -> web.StreamResponse:
                encoded = pool[self.served % len(pool)]
                self.served += 1
                head = json.dumps(
                    {
                        "created": int(time.time()),
                        "output_format": "png",
                        "size": "1024x1024",
                        "usage": {
                            **self._images_usage(input_images),
                            "output_tokens_details": {"image_tokens": 272, "text_tokens": 0},
                        },
                    }
                )
                body = head[:-1] + ', "data": [{"b64_json": "' + encoded + '"}]}'
                return web.Response(
                    body=body.encode("ascii"), content_type="application/json", headers={"x-request-id": request_id}
                )

        async with InstantOpenAI() as fake:
            conn.send(f"{fake.origin}/v1")
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop

    asyncio.run(main())


def clients(pool: int) -> dict[str, Callable[[], httpx2.AsyncClient]]:
    timeout = openai.Timeout(60.0, connect=10.0)
    limits = httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)
    return {
        "httpx2": lambda: openai.DefaultAsyncHttpxClient(timeout=timeout, limits=limits),
        "aiohttp (SDK)": lambda: openai.DefaultAioHttpClient(timeout=timeout, limits=limits),
        "aiohttp (Easel)": lambda: http_client(timeout=timeout, max_connections=pool),
    }


async def one_run(
    base_url: str, make: Callable[[], httpx2.AsyncClient], calls: int, concurrency: int
) -> dict[str, float]:
    sdk = AsyncOpenAI(api_key=KEY, base_url=base_url, max_retries=0, http_client=make())
    sem = asyncio.Semaphore(concurrency)

    async def call(n: int) -> None:
        async with sem:
            answer = await sdk.images.generate(prompt=f"bench {n}", model="gpt-image-2", size="1024x1024")
            assert answer.data and answer.data[0].b64_json
            await decode_off_loop(answer.data[0].b64_json)

    try:
        await asyncio.gather(*(call(n) for n in range(min(concurrency, calls))))  # warm: connections open
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(call(n) for n in range(calls)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await sdk.close()
    return {"cpu_ms_per_call": cpu * 1000 / calls, "calls_per_s": calls / wall}


async def bench(base_url: str, *, calls: int, concurrency: int, runs: int) -> dict[str, dict[str, float]]:
    made = clients(pool=max(256, concurrency))
    results: dict[str, list[dict[str, float]]] = {name: [] for name in made}
    for _ in range(runs):
        for name, make in made.items():  # take turns, run by run
            results[name].append(await one_run(base_url, make, calls, concurrency))
    table = {}
    for name, rows in results.items():
        cpu = sorted(r["cpu_ms_per_call"] for r in rows)
        table[name] = {
            "cpu_ms_per_call": statistics.median(cpu),
            "min": cpu[0],
            "max": cpu[-1],
            "calls_per_s": statistics.median(r["calls_per_s"] for r in rows),
        }
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--realistic", action="store_true", help="1024x1024 PNGs of 1-3 MB")
    args = parser.parse_args(argv)
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(child, args.realistic), daemon=True)
    server.start()
    try:
        base_url = parent.recv()
        table = asyncio.run(bench(base_url, calls=args.calls, concurrency=args.concurrency, runs=args.runs))
    finally:
        parent.send("stop")
        server.join(10)
    images = "1-3 MB images" if args.realistic else "100-byte images"
    print(
        f"OpenAI SDK clients: {args.calls} images.generate calls ({images}), {args.concurrency} at once, "
        f"median of {args.runs} runs; client CPU only (the fake OpenAI runs in another process)"
    )
    print(f"machine: {machine_line()}")
    print(f"  {'client':<18}{'CPU ms/call':>12}{'(min-max)':>16}{'calls/s':>10}")
    for name, row in table.items():
        spread = f"{row['min']:.3f}-{row['max']:.3f}"
        print(f"  {name:<18}{row['cpu_ms_per_call']:>12.3f}{spread:>16}{row['calls_per_s']:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
