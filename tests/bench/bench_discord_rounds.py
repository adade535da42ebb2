"""CPU and REST requests per round of the Discord adapter, through the real discord.py against the fake Discord.

The rounds are played by the shared FakeServices (no core, no provider: they answer at once), so the figures are
the adapter's and discord.py's own cost per round: interaction rounds (`/imagine`) and message rounds (a mention),
`--rounds` of each, `--concurrency` at a time. CPU is this process's (time.process_time), which includes the fake
server's share; the request count is read from the fake's log. Figures only: nothing here asserts on time.

    python -m tests.bench.bench_discord_rounds [--rounds 200] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import discord
from discord.gateway import DiscordWebSocket

from bots.discord.bot import DiscordBot
from tests.discord.discord_support import discord_services, discord_settings
from tests.fakes.fake_discord import FakeDiscord, FakeMember

NOT_ROUND = ("GATEWAY", "cdn", "get_user", "application_info", "get_global_commands", "bulk_upsert_global_commands")


async def measure(name: str, fake: FakeDiscord, rounds: int, concurrency: int,
                  one: Callable[[int], Awaitable[None]]) -> None:
    calls_before = len(fake.calls)
    cpu, wall = time.process_time(), time.perf_counter()
    limit = asyncio.Semaphore(concurrency)

    async def run(i: int) -> None:
        async with limit:
            await one(i)

    await asyncio.gather(*(run(i) for i in range(rounds)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    requests = [c.method for c in fake.calls[calls_before:] if not c.method.startswith(NOT_ROUND)]
    print(f"{name:<18} rounds {rounds:>5}  CPU/round {cpu / rounds * 1000:6.2f} ms  "
          f"REST requests/round {len(requests) / rounds:4.2f}  wall {wall:5.2f} s")


async def main(rounds: int, concurrency: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    base, gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        guild = await fake.guild("Bench")
        members: list[FakeMember] = [fake.member(guild, f"user{i}") for i in range(concurrency)]
        services = discord_services()
        services.dedupe = False
        with tempfile.TemporaryDirectory() as data:
            bot = DiscordBot(discord_settings(fake, Path(data)), services.services, guild_ready_timeout=0.01)
            await bot.start()
            try:
                async def interaction_round(i: int) -> None:
                    found = await fake.slash_command(guild.channel, members[i % concurrency], "imagine",
                                                     {"prompt": f"fox {i}"})
                    await fake.wait_until(lambda: bool((fake.original(found) or {}).get("attachments")),
                                          timeout=60, what=f"round {i}")

                async def message_round(i: int) -> None:
                    done = len(services.delivered)
                    await fake.user_message(guild.channel, members[i % concurrency], f"fox {i}", mention_bot=True)
                    await services.wait_until(lambda: len(services.delivered) > done, timeout=60)

                await measure("warm-up", fake, min(20, rounds), concurrency, interaction_round)
                await measure("interaction rounds", fake, rounds, concurrency, interaction_round)
                await measure("message rounds", fake, rounds, 1, message_round)
            finally:
                await bot.stop()
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.concurrency))
