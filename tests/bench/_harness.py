"""Shared drivers of the benchmarks: the real adapters (discord.py, python-telegram-bot) and the real core, driven
through the in-process fake servers by simulated users, with timestamps taken in one process.

A round is named by a tag in its prompt (`bench#<n> ...`). Its timeline (`time.perf_counter`, seconds):

- `in`: the update arrives. Discord: the fake dispatches INTERACTION_CREATE on the gateway. Telegram: the update
  is pushed to the fake (queued for the bot's long poll).
- `ack`: the fake receives the interaction callback (Discord only).
- `done`: the core has finished the round (`RoundService.submit` returned: the charge is committed).
- `submit`: the adapter hands the round to the core (`RoundService.submit`).
- `call` / `answer`: the hand-written `BenchProvider` is entered / returns its image.
- `deliver`: the core hands the result to the adapter's view (`RoundView.deliver`).
- `upload`: the fake receives the request that carries the result (Discord: PATCH `@original` with the file;
  Telegram: `sendPhoto`), stamped when its headers arrive, before the body is read.

The fakes are subclassed here (tests/fakes is not modified): a middleware stamps each request's arrival in a
context variable, `record()` files it under the round's tag, and `dispatch()` / `push_update()` stamp `in`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import itertools
import json
import logging
import math
import os
import platform
import random
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import yarl
from aiohttp import web
from discord.gateway import DiscordWebSocket
from PIL import Image

from bots.discord.bot import DiscordBot
from bots.process.app import Core, open_core
from bots.process.config import load_settings
from bots.process.logs import setup_logging
from bots.telegram.bot import TelegramBot
from core.events import RoundRequest
from core.outcomes import Preview, Refusal, RoundInfo, RoundResult, RoundView, Stage
from core.ports import GeneratedImage, ImageJob, ProviderEvents, Usage
from core.rounds import RoundService
from tests.fakes._base import Call
from tests.fakes.fake_discord import FakeDiscord, FakeMember
from tests.fakes.fake_telegram import FakeTelegram, StoredFile

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "bench-results"
PLATFORMS = ("telegram", "discord")

_ARRIVAL: contextvars.ContextVar[float] = contextvars.ContextVar("bench_arrival", default=0.0)
_TAG = re.compile(r"bench#(\d+)")
_ABORTED = "ConnectionResetError: Connection lost"


def tag_of(text: str | None) -> int | None:
    found = _TAG.search(text or "")
    return int(found.group(1)) if found else None


def prompt_for(tag: int) -> str:
    return f"bench#{tag} a lighthouse at dusk, oil on canvas"


# -- figures ------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median, p90, p99, max, mean of `values` (same unit as given)."""
    return {
        "n": len(values),
        "median": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
        "mean": sum(values) / len(values) if values else math.nan,
    }


def machine() -> dict[str, Any]:
    model = "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "discord.py": discord.__version__,
        "python-telegram-bot": _version("telegram"),
        "loadavg_1m": loadavg(),
    }


def loadavg() -> float | None:
    """Other processes on the machine compete for the cores: recorded with every result."""
    with suppress(OSError):
        return os.getloadavg()[0]
    return None


def _version(module: str) -> str:
    with suppress(Exception):
        return str(__import__(module).__version__)
    return "?"


def machine_line() -> str:
    m = machine()
    return f"{m['nproc']} cores, {m['cpu']}, Python {m['python']}, {m['system']}"


@dataclass
class Row:
    """One figure against its target, for the combined table. `met` None: informational."""

    benchmark: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None


def print_table(title: str, rows: Sequence[Row]) -> None:
    head = ("benchmark", "figure", "value", "target", "ok")
    cells = [head] + [(r.benchmark, r.figure, r.value, r.target, {True: "yes", False: "MISS", None: ""}[r.met])
                      for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    print(f"\n{title}  [{machine_line()}]")
    for i, line in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def write_json(name: str, payload: Mapping[str, Any], directory: Path | None = None) -> Path:
    directory = directory or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    body = {"benchmark": name, "machine": machine(), "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **payload}
    path.write_text(json.dumps(_clean(body), indent=2, default=str, allow_nan=False) + "\n")
    return path


def _clean(value: Any) -> Any:
    """Strict JSON: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_clean(v) for v in value]
    return value


def ms(seconds: float) -> float:
    return seconds * 1000.0


def rows_to_dicts(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [vars(r) for r in rows]


# -- the timeline of every round ------------------------------------------------------------------------------


class Timeline:
    """First time each event happened to each round (by tag); `wait` wakes when an event is marked."""

    def __init__(self) -> None:
        self.marks: dict[int, dict[str, float]] = {}
        self._waiters: dict[tuple[int, str], asyncio.Future[None]] = {}

    def mark(self, tag: int | None, event: str, at: float | None = None) -> None:
        if tag is None:
            return
        events = self.marks.setdefault(tag, {})
        if event in events:
            return
        events[event] = time.perf_counter() if at is None else at
        waiter = self._waiters.pop((tag, event), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, tag: int, event: str, timeout: float) -> None:
        if event in self.marks.get(tag, {}):
            return
        waiter = self._waiters.setdefault((tag, event), asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            seen = self.marks.get(tag, {})
            raise AssertionError(f"round bench#{tag}: no {event!r} within {timeout} s; saw {sorted(seen)}") from None

    def spans(self, start: str, end: str, tags: Sequence[int]) -> list[float]:
        """`end - start` in milliseconds for every tag that has both events."""
        out = []
        for tag in tags:
            events = self.marks.get(tag, {})
            if start in events and end in events:
                out.append(ms(events[end] - events[start]))
        return out

    def count(self, event: str, tags: Sequence[int]) -> int:
        return sum(1 for tag in tags if event in self.marks.get(tag, {}))


# -- the provider -------------------------------------------------------------------------------------------


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def big_png(side: int = 1024, seed: int = 7) -> bytes:
    """A real side x side PNG of about 1.6 MB at 1024: half noise (incompressible), half flat colour."""
    rng = random.Random(seed)
    half = side * (side // 2) * 3
    raw = rng.randbytes(half) + bytes([90]) * (side * side * 3 - half)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), raw).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    import zlib

    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def fresh_copy(png: bytes, tag: int) -> bytes:
    """A new bytes object (as the real provider decodes one per answer), distinct per round: a private
    ancillary chunk naming the round goes before IEND."""
    return png[:-12] + _chunk(b"beNc", str(tag).encode()) + png[-12:]


@dataclass
class BenchProvider:
    """A hand-written `ImageProvider` (our own seam). Answers after `delay` seconds (0: at once) with `image`
    (a fresh copy per call when `fresh`). `hold(n)` parks calls until `n` are in flight and `release()`."""

    timeline: Timeline
    delay: float = 0.0
    image: bytes = field(default_factory=small_png, repr=False)
    fresh: bool = False
    calls: int = 0
    in_flight: int = 0
    peak: int = 0
    parked: set[int] = field(default_factory=set)  # tags that wait for `unpark()` (long generations)
    _hold_at: int = 0
    _all_in: asyncio.Event = field(default_factory=asyncio.Event)
    _gate: asyncio.Event | None = None
    _unparked: asyncio.Event = field(default_factory=asyncio.Event)

    def hold(self, count: int) -> asyncio.Event:
        """Park the next calls; the returned event is set once `count` are in flight."""
        self._hold_at, self._all_in, self._gate = count, asyncio.Event(), asyncio.Event()
        return self._all_in

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
        self._hold_at, self._gate = 0, None

    def park(self, tags: set[int]) -> None:
        """Calls for these rounds wait until `unpark()`."""
        self.parked, self._unparked = set(tags), asyncio.Event()

    def unpark(self) -> None:
        self._unparked.set()

    def reset_peak(self) -> None:
        self.peak = self.in_flight

    background = False  # foreground calls only: nothing to resume or cancel

    async def resume(self, response_id: str, after_seq: int | None, events: ProviderEvents) -> GeneratedImage:
        raise AssertionError("the bench provider runs no background responses")

    async def cancel(self, response_id: str) -> None:
        return None

    async def delete(self, response_id: str) -> bool:
        return False

    async def create(self, job: ImageJob, events: ProviderEvents) -> GeneratedImage:
        tag = tag_of(job.prompt)
        self.timeline.mark(tag, "call")
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if tag in self.parked:
                await self._unparked.wait()
            gate = self._gate
            if gate is not None:
                if self.in_flight >= self._hold_at:
                    self._all_in.set()
                await gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            image = fresh_copy(self.image, tag or 0) if self.fresh else self.image
            self.timeline.mark(tag, "answer")
            return GeneratedImage(image=image, response_id=f"resp_{tag}", image_call_id=f"ig_{tag}",
                                  usage=Usage(text_input_tokens=12, image_output_tokens=1056),
                                  request_id=f"req_{tag}")
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


# -- the fakes, with timestamps -----------------------------------------------------------------------------


class UploadHold:
    """Parks result uploads in the fake (before their body is read) until `count` are parked and the bench
    calls `release()`: every round then holds its image at once (the memory benchmark)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.parked = 0
        self.all_parked = asyncio.Event()
        self._go = asyncio.Event()

    async def park(self) -> None:
        self.parked += 1
        if self.parked >= self.count:
            self.all_parked.set()
        await self._go.wait()

    def release(self) -> None:
        self._go.set()


class _Stamping:
    """Mixin for a FakeServer: stamp each request's arrival; optionally park result uploads."""

    marks_to: Timeline
    upload_hold: UploadHold | None = None
    keep_uploads = True  # False: drop uploaded bytes once handled (they'd count in this process's RSS)

    def _install(self, app: web.Application) -> None:
        app.middlewares.append(self._arrival)

    @web.middleware
    async def _arrival(self, request: web.Request, handler: Any) -> web.StreamResponse:
        _ARRIVAL.set(time.perf_counter())
        hold = self.upload_hold
        if hold is not None and self.is_upload(request):
            await hold.park()
        response: web.StreamResponse = await handler(request)
        return response

    def is_upload(self, request: web.Request) -> bool:
        raise NotImplementedError


class BenchDiscord(_Stamping, FakeDiscord):
    def __init__(self, timeline: Timeline, **kwargs: Any) -> None:
        self.marks_to = timeline
        self.tag_by_token: dict[str, int] = {}
        super().__init__(**kwargs)
        self._install(self.app)

    def _store_commands(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Discord answers every application command with a `description` ("" for context-menu commands);
        # discord.py reads it. The base fake echoes the payload without it.
        return [{"description": "", **c} for c in super()._store_commands(commands)]

    def is_upload(self, request: web.Request) -> bool:
        return (request.method == "PATCH" and request.path.endswith("/messages/@original")
                and request.content_type.startswith("multipart/"))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        if event == "INTERACTION_CREATE" and "token" in data:
            options = (data.get("data") or {}).get("options") or []
            tag = tag_of(next((str(o.get("value")) for o in options if o.get("name") == "prompt"), ""))
            if tag is not None:
                self.tag_by_token[data["token"]] = tag
                self.marks_to.mark(tag, "in")
        await super().dispatch(event, data)

    def record(self, call: Call) -> None:
        super().record(call)
        token = (call.params.get("_path") or {}).get("token") if call.params else None
        tag = self.tag_by_token.get(token) if token else None
        if tag is None:
            return
        if call.method == "interaction_callback":
            self.marks_to.mark(tag, "ack", _ARRIVAL.get())
        elif call.method == "edit_original" and call.files:
            self.marks_to.mark(tag, "upload", _ARRIVAL.get())

    def _attachment(self, channel_id: int, upload: Any) -> dict[str, Any]:
        attachment = super()._attachment(channel_id, upload)
        if not self.keep_uploads:
            path = attachment["proxy_url"].removeprefix(self.origin)
            self.cdn[path] = (b"", self.cdn[path][1])
        return attachment


class BenchTelegram(_Stamping, FakeTelegram):
    def __init__(self, timeline: Timeline, **kwargs: Any) -> None:
        self.marks_to = timeline
        self.tag_by_message: dict[tuple[int, int], int] = {}
        super().__init__(**kwargs)
        self._install(self.app)

    def is_upload(self, request: web.Request) -> bool:
        return request.path.endswith("/sendPhoto")

    async def push_update(self, update: Mapping[str, Any]) -> dict[str, Any]:
        message = update.get("message") or {}
        tag = tag_of(message.get("text"))
        if tag is not None:
            self.tag_by_message[(message["chat"]["id"], message["message_id"])] = tag
            self.marks_to.mark(tag, "in")
        return await super().push_update(update)

    def record(self, call: Call) -> None:
        super().record(call)
        if call.method != "sendPhoto":
            return
        reply = call.params.get("reply_parameters") or {}
        with suppress(KeyError, TypeError, ValueError):
            tag = self.tag_by_message[(int(call.params["chat_id"]), int(reply["message_id"]))]
            self.marks_to.mark(tag, "upload", _ARRIVAL.get())

    def put_file(self, data: bytes, *, declared_size: int | None = None, kind: str = "photos",
                 ext: str = "jpg") -> tuple[str, StoredFile]:
        return super().put_file(data if self.keep_uploads else b"", declared_size=declared_size or len(data),
                                kind=kind, ext=ext)


# -- the seam between adapter and core -------------------------------------------------------------------------


class StampingView:
    """Wraps the adapter's RoundView on its way into the core: stamps `deliver` when the core hands over the
    result (so each interval splits into the core's part and the adapter's part)."""

    def __init__(self, view: RoundView, timeline: Timeline, tag: int | None) -> None:
        self._view, self._timeline, self._tag = view, timeline, tag

    async def begin(self, info: RoundInfo) -> None:
        await self._view.begin(info)

    async def stage(self, stage: Stage) -> None:
        await self._view.stage(stage)

    def progress_message(self) -> str | None:
        return self._view.progress_message()

    async def queued(self, position: int) -> None:
        await self._view.queued(position)

    async def started(self) -> None:
        await self._view.started()

    async def partial(self, preview: Preview) -> None:
        await self._view.partial(preview)

    async def deliver(self, result: RoundResult) -> list[str]:
        self._timeline.mark(self._tag, "deliver")
        return await self._view.deliver(result)

    async def refuse(self, refusal: Refusal) -> None:
        await self._view.refuse(refusal)


def stamp_rounds(rounds: RoundService, timeline: Timeline) -> None:
    """Stamp `submit` when the adapter hands a round to the core and `done` when the core has finished it
    (charge committed), and wrap its view (see StampingView)."""
    submit = rounds.submit

    async def stamped(request: RoundRequest, view: RoundView) -> None:
        tag = tag_of(request.prompt)
        timeline.mark(tag, "submit")
        try:
            await submit(request, StampingView(view, timeline, tag))
        finally:
            timeline.mark(tag, "done")

    rounds.submit = stamped  # type: ignore[method-assign]


# -- a rig: fake platform + real adapter + real core --------------------------------------------------------


class Problems(logging.Handler):
    """Counts WARNING and worse from Easel and the libraries (a clean run has none)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, limit: int = 5) -> list[str]:
        out = []
        for record in self.records[:limit]:
            line = f"{record.levelname} {record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                line += f" [{type(error).__name__}: {str(error)[:200]}]"
            out.append(line)
        return out


@dataclass
class Rig:
    platform: str
    core: Core
    timeline: Timeline
    provider: BenchProvider
    fake: BenchDiscord | BenchTelegram
    problems: Problems
    submit_as: Callable[[int, int], Awaitable[None]]  # (user index, tag)
    users: int
    app_errors: list[BaseException] = field(default_factory=list)
    _tags: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_tag(self) -> int:
        return next(self._tags)

    async def submit(self, user: int) -> int:
        tag = self.new_tag()
        await self.submit_as(user, tag)
        return tag

    async def settle(self, timeout: float = 60.0) -> None:
        """Wait until every round has finished in the core (its charge committed)."""
        running = set(self.core.rounds._tasks)
        if running:
            _, pending = await asyncio.wait(running, timeout=timeout)
            if pending:
                raise AssertionError(f"{len(pending)} rounds still running after {timeout} s")

    async def outcomes(self) -> dict[str, int]:
        # A post-mortem read of the database file (read-only, its own connection): the store port has no
        # "count by state", and the benchmark must not add one to the product for itself.
        path = self.core.settings.db_path
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
            rows = conn.execute("SELECT status, count(*) FROM rounds GROUP BY status").fetchall()
        return {str(status): int(count) for status, count in rows}

    def aborted_requests(self) -> int:
        """Requests the client dropped mid-way (the fake saw the connection close while reading the body)."""
        return sum(1 for e in self.fake.fake_errors if _ABORTED in e)

    def faults(self) -> list[str]:
        """Everything that should not happen in a clean run (aborted requests are counted apart)."""
        found = [f"fake: {e[-400:]}" for e in self.fake.fake_errors if _ABORTED not in e][:3]
        found += [c.method for c in self.fake.calls if c.method.startswith(("UNHANDLED", "4", "5"))][:10]
        found += [f"app: {e!r}" for e in self.app_errors[:5]]
        found += self.problems.lines()
        return found


def bench_env(data_dir: Path, **extra: str | int | float) -> dict[str, str]:
    env = {"OPENAI_API_KEY": "sk-bench-not-a-key", "EASEL_DATA_DIR": str(data_dir), "EASEL_LOG_LEVEL": "INFO",
           "EASEL_DAILY_CREDITS": "100000", "EASEL_QUEUE_LIMIT": "1000",
           # A benchmark user sends far more than a person would; the per-user guards would refuse them.
           "EASEL_USER_RATE": "10000", "EASEL_USER_CONCURRENCY": "100"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


@asynccontextmanager
async def _logging_to(path: Path, settings: Any) -> AsyncIterator[Problems]:
    """Easel's production logging (level, format, redaction) into a file, plus a problem counter."""
    root = logging.getLogger()
    before, level, hook = list(root.handlers), root.level, sys.excepthook
    problems = Problems()
    with open(path, "a", encoding="utf-8") as stream:
        setup_logging(settings, [], stream=stream)
        root.addHandler(problems)
        try:
            yield problems
        finally:
            for handler in list(root.handlers):
                if handler not in before:
                    root.removeHandler(handler)
            root.setLevel(level)
            sys.excepthook = hook


@asynccontextmanager
async def open_rig(platform_name: str, *, users: int, provider: BenchProvider | None = None,
                   channels: int = 10, keep_uploads: bool = True,
                   **env: str | int | float) -> AsyncIterator[Rig]:
    """A fake platform with `users` members across `channels` chats, Easel's adapter for it and the real core
    (SQLite in a temporary directory) with `provider`. `env`: extra EASEL_* settings."""
    if platform_name not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}")
    timeline = provider.timeline if provider is not None else Timeline()
    provider = provider or BenchProvider(timeline)
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="easel-bench-")))
        if platform_name == "discord":
            rig = await _discord_rig(stack, tmp, timeline, provider, users, channels, keep_uploads, env)
        else:
            rig = await _telegram_rig(stack, tmp, timeline, provider, users, channels, keep_uploads, env)
        yield rig


async def _discord_rig(stack: AsyncExitStack, tmp: Path, timeline: Timeline, provider: BenchProvider,
                       users: int, channels: int, keep_uploads: bool, env: Mapping[str, Any]) -> Rig:
    # The adapter points discord.py's class attributes at the fake; put them back afterwards.
    base, gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY

    def restore() -> None:
        discord.http.Route.BASE = base
        DiscordWebSocket.DEFAULT_GATEWAY = gateway if isinstance(gateway, yarl.URL) else yarl.URL(str(gateway))

    stack.callback(restore)
    fake = BenchDiscord(timeline)
    await stack.enter_async_context(fake)
    fake.keep_uploads = keep_uploads
    guild = await fake.guild("Bench", channels=tuple(f"c{i}" for i in range(channels)))
    members: list[FakeMember] = [fake.member(guild, f"user{i}") for i in range(users)]
    settings = load_settings(bench_env(tmp / "data", DISCORD_TOKEN=fake.token,
                                       EASEL_DISCORD_API_URL=fake.api_url,
                                       EASEL_DISCORD_GATEWAY_URL=fake.gateway_url, **env), dotenv=None)
    problems = await stack.enter_async_context(_logging_to(tmp / "easel.log", settings))
    core = await stack.enter_async_context(open_core(settings, provider=provider))
    stamp_rounds(core.rounds, timeline)
    bot = DiscordBot(settings, core.services, guild_ready_timeout=0.01)
    await bot.start()
    stack.push_async_callback(bot.stop)

    async def submit_as(user: int, tag: int) -> None:
        channel = guild.channels[user % len(guild.channels)]
        await fake.slash_command(channel, members[user], "imagine", {"prompt": prompt_for(tag)})

    return Rig("discord", core, timeline, provider, fake, problems, submit_as, users)


async def _telegram_rig(stack: AsyncExitStack, tmp: Path, timeline: Timeline, provider: BenchProvider,
                        users: int, channels: int, keep_uploads: bool, env: Mapping[str, Any]) -> Rig:
    fake = BenchTelegram(timeline)
    await stack.enter_async_context(fake)
    fake.keep_uploads = keep_uploads
    people = [fake.user(f"User{i}", f"user{i}") for i in range(users)]
    groups = [fake.group_chat(f"Group {i}") for i in range(channels)]
    settings = load_settings(bench_env(tmp / "data", TELEGRAM_TOKEN=fake.token, EASEL_TELEGRAM_API_URL=fake.root,
                                       **env), dotenv=None)
    problems = await stack.enter_async_context(_logging_to(tmp / "easel.log", settings))
    core = await stack.enter_async_context(open_core(settings, provider=provider))
    stamp_rounds(core.rounds, timeline)
    bot = TelegramBot(settings, core.services, request_timeout=30.0, poll_timeout=10.0, stop_grace=5.0)
    await bot.start()
    stack.push_async_callback(bot.stop)
    app_errors: list[BaseException] = []
    assert bot.application is not None

    async def on_error(update: object, context: Any) -> None:
        app_errors.append(context.error)

    bot.application.add_error_handler(on_error)

    async def submit_as(user: int, tag: int) -> None:
        await fake.send_message(groups[user % len(groups)], people[user], f"/imagine {prompt_for(tag)}")

    return Rig("telegram", core, timeline, provider, fake, problems, submit_as, users, app_errors)


# -- load shapes --------------------------------------------------------------------------------------------


async def closed_loop(rig: Rig, workers: int, rounds: int, *, warmup: int = 0, timeout: float = 60.0,
                      first_user: int = 0, settle: bool = True) -> list[int]:
    """`workers` users, each sending its next round when the core has finished the previous one (so each
    has one round in flight). Returns the measured tags (warm-up rounds left out), in order of sending.
    `settle`: then wait for every round in the core to finish (not while some are parked at the provider)."""
    measured: list[int] = []

    async def worker(user: int) -> None:
        for index in range(warmup + rounds):
            tag = rig.new_tag()
            if index >= warmup:
                measured.append(tag)
            await rig.submit_as(user, tag)
            try:
                await rig.timeline.wait(tag, "done", timeout)
            except AssertionError as error:
                recent = [c.method for c in rig.fake.calls[-8:]]
                raise AssertionError(f"{error}; faults: {rig.faults()}; last calls: {recent}") from None

    await asyncio.gather(*(worker(first_user + i) for i in range(workers)))
    if settle:
        await rig.settle()
    return measured


def fmt_ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f} ms"


async def run_forever_guard(coro: Awaitable[Any], limit: float) -> Any:
    """A benchmark that hangs is a bug: fail it after `limit` seconds."""
    return await asyncio.wait_for(coro, limit)


def report(data: dict[str, Any], name: str) -> None:
    """Print a benchmark's table and faults, and write its JSON."""
    print_table(f"Easel benchmark: {name}", [Row(**r) for r in data["rows"]])
    for res in data["results"]:
        if res["faults"]:
            print(f"  faults on {res['platform']}: {res['faults']}")
    print(f"  -> {write_json(name, data)}")
