"""Background responses of the fake OpenAI server (`background: true` on POST /v1/responses).

A run lives on the server independently of any connection: its events are numbered from 0 and kept, so
`GET /v1/responses/{id}?stream=true&starting_after=N` replays what came after N and then follows the run
live; `GET /v1/responses/{id}` gives its current state (queued, in_progress, completed, failed, cancelled);
`POST /v1/responses/{id}/cancel` stops it. Time is scripted, never slept: a run waits at a `hold(stage)`
("thinking": before the image call starts, "drawing": after the partial previews) until the test sets the
event, and a fake clock (`advance`) makes runs older than `retention` seconds unknown (404), as the real
API forgets background responses after about ten minutes. Connection faults (`stream_drop`, `stream_hang`
with `after_seq=K`, `after_partials=N` or `after_image=True`) cut one stream while the run goes on."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.fakes.fake_openai import FakeOpenAI, Fault

TERMINAL = frozenset({"completed", "failed", "cancelled", "incomplete"})
IN_RUN_FAULTS = frozenset({"ig_failed", "response_failed", "error_event", "stream_api_error"})
PARTIAL = "response.image_generation_call.partial_image"


@dataclass
class Run:
    id: str
    number: int
    plan: dict[str, Any]
    image: bytes = field(repr=False)
    created: float
    fault: Fault | None = None  # a failure inside the run (the image call or the response fails)
    status: str = "queued"
    body: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Runs:
    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.by_id: dict[str, Run] = {}
        self.clock = 0.0  # fake seconds, moved only by `advance`
        self.retention = 600.0
        self.holds: dict[str, asyncio.Event] = {}

    # ---- scripting ---------------------------------------------------------------------------------------

    def hold(self, stage: str) -> asyncio.Event:
        """Runs wait at `stage` ("thinking" or "drawing") until the returned event is set."""
        if stage not in ("thinking", "drawing"):
            raise ValueError(f"unknown stage {stage!r}")
        return self.holds.setdefault(stage, asyncio.Event())

    def advance(self, seconds: float) -> None:
        self.clock += seconds

    def get(self, response_id: str) -> Run | None:
        run = self.by_id.get(response_id)
        if run is not None and self.clock - run.created > self.retention:
            self.forget(response_id)
            return None
        return run

    def forget(self, response_id: str | None = None) -> None:
        """Expire one run (or all): its id becomes unknown, as if the provider's retention had passed."""
        ids = [response_id] if response_id is not None else list(self.by_id)
        for rid in ids:
            run = self.by_id.pop(rid, None)
            self.fake.responses.pop(rid, None)
            if run is not None and run.task is not None:
                run.task.cancel()

    async def stop(self) -> None:
        for event in self.holds.values():
            event.set()
        tasks = [run.task for run in self.by_id.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---- the run ----------------------------------------------------------------------------------------

    def start(self, plan: dict[str, Any], fault: Fault | None) -> Run:
        number, image = self.fake._new_image(transparent=plan["transparent"])
        rid = f"resp_fake_{number}"
        run = Run(rid, number, plan, image, self.clock, fault if fault and fault.kind in IN_RUN_FAULTS else None)
        self.by_id[rid] = run
        self._status(run, "queued")
        self._emit(run, "response.created", {"response": run.body})
        run.task = asyncio.get_running_loop().create_task(self._drive(run))
        return run

    def _status(self, run: Run, status: str, output: list[dict[str, Any]] | None = None,
                error: dict[str, Any] | None = None) -> None:
        run.status = status
        run.body = self.fake._response_body(run.id, run.plan, output or [], status, error)
        run.body["background"] = True
        run.notify()

    def _emit(self, run: Run, type_: str, data: dict[str, Any]) -> None:
        run.events.append({"type": type_, **data, "sequence_number": len(run.events)})
        run.notify()

    async def _step(self, run: Run, type_: str, data: dict[str, Any]) -> None:
        if self.fake.event_delay:
            await asyncio.sleep(self.fake.event_delay)
        self._emit(run, type_, data)

    async def _drive(self, run: Run) -> None:
        fake, plan = self.fake, run.plan
        self._status(run, "in_progress")
        await self._step(run, "response.in_progress", {"response": run.body})
        if "thinking" in self.holds:
            await self.holds["thinking"].wait()
        for type_, data in fake._drawing_events(run.number, plan, plan["partials"]):
            await self._step(run, type_, data)
        if run.fault is not None:
            await self._fail(run, run.fault)
            return
        if "drawing" in self.holds:
            await self.holds["drawing"].wait()
        output: list[dict[str, Any]] = []
        for type_, event in fake._closing_events(run.number, plan, run.image):
            data = event
            if type_ == "response.output_item.done":
                output.append(data["item"])
                if data["item"]["type"] == "image_generation_call":
                    fake._produced(run.image)
            if type_ == "response.completed":
                self._status(run, "completed", output)
                fake._store(run.body, plan)
                data = {"response": run.body}
            await self._step(run, type_, data)
        run.notify()

    async def _fail(self, run: Run, fault: Fault) -> None:
        fake = self.fake
        if fault.kind == "ig_failed":
            failed = fake._ig_item(run.number, run.plan, "failed", error=fake._moderation_error(fault))
            await self._step(run, "response.output_item.done", {"output_index": 0, "item": failed})
            self._status(run, "completed", [failed])
            await self._step(run, "response.completed", {"response": run.body})
        elif fault.kind == "response_failed":
            self._status(run, "failed", error=fake._failure(fault))
            await self._step(run, "response.failed", {"response": run.body})
        else:
            failure = fake._failure(fault)
            await self._step(run, "error", {"code": failure["code"], "message": failure["message"], "param": None})
            self._status(run, "failed", error=failure)

    def cancel(self, run: Run) -> None:
        if run.terminal:
            return
        if run.task is not None:
            run.task.cancel()
        self._status(run, "cancelled", error=None)

    # ---- one stream connection ----------------------------------------------------------------------------

    async def serve(self, request: web.Request, request_id: str, run: Run, after: int,
                    fault: Fault | None) -> web.StreamResponse:
        """Send the run's events after `after`, then follow it live until it ends (or a fault cuts in)."""
        from tests.fakes.fake_openai import _Sse

        sse = _Sse(request, request_id, self.fake, sequence=False)
        await sse.open()
        cut = fault if fault is not None and fault.kind in ("stream_drop", "stream_hang") else None
        index = after + 1
        while True:
            while index < len(run.events):
                event = run.events[index]
                if cut is not None and _cuts(cut, event, run.events[index - 1] if index else None):
                    if cut.kind == "stream_hang":
                        await self.fake._release.wait()
                        return await sse.close()
                    return await self.fake._drop(request)
                try:
                    await sse.raw(event["type"], event)
                except ConnectionResetError:
                    return sse.response  # the client went away (a restart); the run goes on
                index += 1
            if run.terminal:
                return await sse.close()
            await run.changed.wait()


def _cuts(fault: Fault, event: dict[str, Any], previous: dict[str, Any] | None) -> bool:
    """Whether the connection breaks just before `event`."""
    opts = fault.opts
    if "after_seq" in opts:
        return bool(event["sequence_number"] > int(opts["after_seq"]))
    if opts.get("after_image"):
        return bool(previous is not None and previous["type"] == "response.output_item.done"
                    and previous["item"]["type"] == "image_generation_call")
    limit = int(opts.get("after_partials", 0))
    if event["type"] == PARTIAL:
        return bool(event["partial_image_index"] >= limit)
    return bool(event["type"] == "response.image_generation_call.completed")
