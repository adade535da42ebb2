"""A fake OpenAI image API on loopback that the real `openai` SDK talks to (openai-images.md §9).

Routes: POST /v1/responses (JSON or SSE; `background: true` runs it in the background, see
`tests.fakes.fake_openai_runs`), GET /v1/responses/{id} (also `?stream=true&starting_after=N`), POST
/v1/responses/{id}/cancel, DELETE /v1/responses/{id} (the id is then unknown: 404 on GET, listed in
`deleted`), POST /v1/images/generations (JSON or SSE), POST /v1/images/edits (multipart,
`image` or `image[]`). Every request is recorded as a `Call` whose
`method` is "POST /v1/responses" etc., with lower-cased headers, the parsed JSON or form fields in `params`
(uploads described in `params["_uploads"]`) and uploaded bytes in `files`.

Images are real PNGs: the final image of generation N is a flat `color(N)` square, so a test can tell which
generation it got; with `background: transparent` it is RGBA whose alpha runs from 0 (left) to 255 (right)
(`alphas(image)`). Models in `refuse_transparency` answer a transparent request with a 400 naming the
`background` parameter. `billed` counts generations that produced an image.

Faults: `fail_next(kind, count=1, **opts)` applies to the next `count` requests (optionally only to one
`endpoint`: "responses", "generations", "edits", "retrieve" (GET, streamed or not), "cancel" or "delete").
Kinds answered before any output:
  moderation (stage="input"|"output"), rate_limit (retry_after=1, retry_after_ms=None),
  insufficient_quota, server_error (status=500), bad_request (message, code, param), unauthorized,
  forbidden, not_found, hang (parks until the server stops), disconnect (drops the connection),
  slow (seconds=...: delay, then answer normally).
Kinds inside a stream (after `after_partials` partial images, default 0; on JSON requests the same failure
is reported in the body where the API can do that):
  ig_failed (the image call fails with moderation_blocked, stage="output"), response_failed (code=...),
  error_event (a `type:error` event, code=...), stream_api_error (a `data.error` payload the SDK raises),
  stream_hang (parks mid-stream), stream_drop (drops the connection mid-stream; with after_image=True on
  /v1/responses, right after the finished image item; on a background stream also after_seq=K). On a
  background response the in-stream failures happen to the run, the connection faults only to the stream.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from PIL import Image

from tests.fakes._base import Call, FakeServer
from tests.fakes.fake_openai_runs import Run, Runs

ACCEPTED_UPLOAD_TYPES = ("image/jpeg", "image/png", "image/webp")
MODERATION_MESSAGE = (
    "Your request was rejected by the safety system. If you believe this is an error, contact us at "
    "help.openai.com and include the request ID {request_id}. safety_violations=[sexual]."
)


def color(number: int) -> tuple[int, int, int]:
    """The flat colour of generation `number`'s final image."""
    return ((number * 40) % 256, (255 - number * 17) % 256, (number * 90 + 30) % 256)


def png(side: int, rgb: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def transparent_png(side: int, rgb: tuple[int, int, int]) -> bytes:
    """RGBA in `rgb`, its alpha rising from 0 at the left edge to 255 at the right."""
    image = Image.new("RGBA", (side, side), (*rgb, 0))
    for x in range(side):
        alpha = round(255 * x / max(1, side - 1))
        for y in range(side):
            image.putpixel((x, y), (*rgb, alpha))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def alphas(data: bytes) -> tuple[int, int] | None:
    """(min, max) alpha of an image, None when it has no alpha channel."""
    with Image.open(io.BytesIO(data)) as image:
        if "A" not in image.getbands():
            return None
        low, high = image.getchannel("A").getextrema()
    assert isinstance(low, int) and isinstance(high, int)
    return low, high


def pixel(data: bytes) -> tuple[int, ...]:
    """The top-left pixel of an image, as RGB."""
    with Image.open(io.BytesIO(data)) as image:
        value = image.convert("RGB").getpixel((0, 0))
    assert isinstance(value, tuple)
    return value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class Fault:
    kind: str
    count: int
    endpoint: str | None
    opts: dict[str, Any] = field(default_factory=dict)


class ApiError(Exception):
    """Raised inside a handler to answer with an OpenAI error body."""

    def __init__(
        self, status: int, message: str, *, type_: str, code: str | None, param: str | None = None,
        headers: dict[str, str] | None = None, **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}
        self.headers = headers or {}


EARLY_FAULTS = {
    "moderation", "rate_limit", "insufficient_quota", "server_error", "bad_request", "unauthorized", "forbidden",
    "not_found", "hang", "disconnect", "slow",
}
STREAM_FAULTS = {"ig_failed", "response_failed", "error_event", "stream_api_error", "stream_hang", "stream_drop"}


class FakeOpenAI(FakeServer):
    def __init__(self, *, image_side: int = 32, report_usage: bool = True) -> None:
        self.image_side = image_side
        self.report_usage = report_usage
        self.responses: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []  # response ids deleted with DELETE /v1/responses/{id}
        self.images: list[bytes] = []  # final images, in generation order
        self.generations = 0
        self.billed = 0
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.event_delay = 0.0  # seconds between SSE events
        self.partials_override: int | None = None  # send fewer partials than asked, like the real API may
        self.refuse_transparency: set[str] = set()  # image models that answer `transparent` with a 400
        self._faults: list[Fault] = []
        self._release = asyncio.Event()
        self.runs = Runs(self)
        super().__init__()

    # ---- scripting -------------------------------------------------------------------------------------

    def fail_next(self, kind: str, count: int = 1, *, endpoint: str | None = None, **opts: Any) -> None:
        if kind not in EARLY_FAULTS | STREAM_FAULTS:
            raise ValueError(f"unknown fault kind {kind!r}")
        self._faults.append(Fault(kind, count, endpoint, opts))

    def forget_responses(self) -> None:
        """Simulate expiry: every stored response id (background ones included) becomes unknown."""
        self.runs.forget()
        self.responses.clear()

    def expire(self, response_id: str) -> None:
        """One response id becomes unknown (404 on GET, `previous_response_not_found` as a parent)."""
        self.runs.forget(response_id)
        self.responses.pop(response_id, None)

    def hold(self, stage: str) -> asyncio.Event:
        """Background runs wait at `stage` ("thinking" or "drawing") until the returned event is set."""
        return self.runs.hold(stage)

    def advance(self, seconds: float) -> None:
        """Move the fake clock: background responses older than `runs.retention` (600 s) are forgotten."""
        self.runs.advance(seconds)

    def run(self, response_id: str) -> Run:
        run = self.runs.get(response_id)
        assert run is not None, f"no background response {response_id}"
        return run

    def bodies(self, method: str) -> list[dict[str, Any]]:
        """The recorded request bodies (JSON, or form fields for edits) of `method`, in order."""
        return [call.params for call in self.calls_to(method)]

    async def before_stop(self) -> None:
        self._release.set()
        await self.runs.stop()

    def input_images(self, call: Call) -> list[bytes]:
        """The bytes of every `input_image` data URL in a recorded Responses request."""
        found: list[bytes] = []
        for part in _content_parts(call.params.get("input")):
            if part.get("type") == "input_image":
                url = str(part.get("image_url", ""))
                found.append(base64.b64decode(url.split(",", 1)[1]))
        return found

    # ---- plumbing ----------------------------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/responses/{response_id}", self._get_response)
        app.router.add_post("/v1/responses/{response_id}/cancel", self._cancel_response)
        app.router.add_delete("/v1/responses/{response_id}", self._delete_response)
        app.router.add_post("/v1/images/generations", self._generations)
        app.router.add_post("/v1/images/edits", self._edits)

    def _take_fault(self, endpoint: str) -> Fault | None:
        for fault in self._faults:
            if fault.endpoint in (None, endpoint):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _request_id(self) -> str:
        self.requests += 1
        return f"req_fake_{self.requests}"

    def _json(self, body: Any, request_id: str, status: int = 200, headers: dict[str, str] | None = None
              ) -> web.Response:
        return web.json_response(body, status=status, headers={"x-request-id": request_id, **(headers or {})})

    def _error_response(self, error: ApiError, request_id: str) -> web.Response:
        return self._json(error.body, request_id, status=error.status, headers=error.headers)

    async def _handle(self, request: web.Request, endpoint: str, body: Any) -> web.StreamResponse:
        """Count concurrency, apply a pre-output fault, then run `body(fault)`."""
        request_id = self._request_id()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            fault = self._take_fault(endpoint)
            if fault is not None and fault.kind not in STREAM_FAULTS:
                early = await self._early_fault(request, fault, request_id)
                if early is not None:
                    return early
                fault = None
            try:
                result: web.StreamResponse = await body(request_id, fault)
            except ApiError as error:
                return self._error_response(error, request_id)
            return result
        finally:
            self.in_flight -= 1

    async def _early_fault(
        self, request: web.Request, fault: Fault, request_id: str
    ) -> web.StreamResponse | None:
        opts = fault.opts
        if fault.kind == "slow":
            await asyncio.sleep(float(opts.get("seconds", 0.2)))
            return None
        if fault.kind == "hang":
            await self._release.wait()
            return self._error_response(ApiError(503, "stopped", type_="server_error", code=None), request_id)
        if fault.kind == "disconnect":
            return await self._drop(request)
        return self._error_response(self._fault_error(fault, request_id), request_id)

    async def _connection_fault(self, request: web.Request, fault: Fault, request_id: str) -> web.StreamResponse:
        """A stream fault on a request that does not stream: it hangs or drops before any answer."""
        if fault.kind == "stream_hang":
            await self._release.wait()
            return self._error_response(ApiError(503, "stopped", type_="server_error", code=None), request_id)
        return await self._drop(request)

    async def _drop(self, request: web.Request) -> web.StreamResponse:
        """Close the connection without an answer (the client sees a protocol error, not a refusal)."""
        assert request.transport is not None
        request.transport.close()
        response = web.StreamResponse()
        response.force_close()
        return response

    def _fault_error(self, fault: Fault, request_id: str) -> ApiError:
        opts = fault.opts
        kind = fault.kind
        if kind == "moderation":
            return ApiError(
                400, MODERATION_MESSAGE.format(request_id=request_id), type_="image_generation_user_error",
                code="moderation_blocked",
                moderation_details={"moderation_stage": opts.get("stage", "input"), "categories": ["sexual"]},
            )
        if kind == "rate_limit":
            wait = opts.get("retry_after", 1)
            headers = {"retry-after": str(wait)}
            if opts.get("retry_after_ms") is not None:
                headers = {"retry-after-ms": str(opts["retry_after_ms"])}
            if opts.get("no_header"):
                headers = {}
            return ApiError(
                429, f"Rate limit reached for gpt-image-2 in organization org-fake on images per minute (IPM): "
                f"Limit 5, Used 5, Requested 1. Please try again in {wait}s.", type_="requests",
                code="rate_limit_exceeded", headers=headers,
            )
        if kind == "insufficient_quota":
            return ApiError(
                429, "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/"
                "api-errors.", type_="insufficient_quota", code="insufficient_quota",
                headers={"x-should-retry": "false"},
            )
        if kind == "server_error":
            return ApiError(
                int(opts.get("status", 500)), "The server had an error while processing your request. Sorry "
                "about that!", type_="server_error", code=None,
            )
        if kind == "bad_request":
            return ApiError(
                400, opts.get("message", "Invalid value: 'sizes'. Supported values are: '1024x1024'."),
                type_="invalid_request_error", code=opts.get("code", "invalid_value"), param=opts.get("param"),
            )
        if kind == "unauthorized":
            return ApiError(
                401, "Incorrect API key provided: sk-test. You can find your API key at "
                "https://platform.openai.com/account/api-keys.", type_="invalid_request_error",
                code="invalid_api_key",
            )
        if kind == "forbidden":
            return ApiError(
                403, "Your organization must be verified to use the model `gpt-image-2`.",
                type_="invalid_request_error", code=None,
            )
        if kind == "not_found":
            return ApiError(
                404, "The model `gpt-image-2` does not exist or you do not have access to it.",
                type_="invalid_request_error", code="model_not_found",
            )
        raise AssertionError(f"unknown fault kind {kind!r}")

    def _new_image(self, *, transparent: bool = False) -> tuple[int, bytes]:
        self.generations += 1
        make = transparent_png if transparent else png
        return self.generations, make(self.image_side, color(self.generations))

    def _check_transparency(self, model: object, background: object, param: str) -> None:
        if background == "transparent" and model in self.refuse_transparency:
            raise ApiError(400, f"Transparent background is not supported for model '{model}'. Use 'opaque' or "
                           "'auto'.", type_="invalid_request_error", code="invalid_value", param=param)

    def _produced(self, image: bytes) -> None:
        self.billed += 1
        self.images.append(image)

    @staticmethod
    def _partial_png(index: int) -> bytes:
        return png(8, (index * 60 % 256, 10, 10))

    # ---- Responses -------------------------------------------------------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        self.record(Call("POST /v1/responses", params=payload, headers=_headers(request)))

        async def body(request_id: str, fault: Fault | None) -> web.StreamResponse:
            plan = self._plan_response(payload)
            if payload.get("background"):
                run = self.runs.start(plan, fault)
                if payload.get("stream"):
                    return await self.runs.serve(request, request_id, run, -1, fault)
                return self._json(run.body, request_id)
            if fault is not None and not payload.get("stream") and fault.kind in ("stream_hang", "stream_drop"):
                return await self._connection_fault(request, fault, request_id)
            if payload.get("stream"):
                return await self._responses_stream(request, request_id, plan, fault)
            return self._responses_json(request_id, plan, fault)

        return await self._handle(request, "responses", body)

    def _plan_response(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Validate like the real endpoint and work out what the answer contains."""
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "Missing required parameter: 'model'.", type_="invalid_request_error",
                           code="missing_required_parameter", param="model")
        if model.startswith(("gpt-image", "dall-e")):
            raise ApiError(400, f"The requested model '{model}' is not supported with the Responses API.",
                           type_="invalid_request_error", code="model_not_found", param="model")
        tools = payload.get("tools") or []
        tool = next((t for t in tools if t.get("type") == "image_generation"), None)
        if tool is None:
            raise ApiError(400, "Fake: expected an image_generation tool.", type_="invalid_request_error",
                           code="invalid_value", param="tools")
        previous = payload.get("previous_response_id")
        parent: dict[str, Any] | None = None
        if previous is not None:
            parent = self.responses.get(previous)
            if parent is None:
                raise ApiError(400, f"Previous response with id '{previous}' not found.",
                               type_="invalid_request_error", code="previous_response_not_found",
                               param="previous_response_id")
        texts: list[str] = []
        images = 0
        for index, part in enumerate(_content_parts(payload.get("input"))):
            if part.get("type") == "input_text":
                texts.append(str(part.get("text", "")))
            elif part.get("type") == "input_image":
                _check_data_url(str(part.get("image_url", "")), f"input[0].content[{index}].image_url")
                images += 1
        if isinstance(payload.get("input"), str):
            texts.append(payload["input"])
        prompt = " ".join(texts).strip()
        if not prompt:
            raise ApiError(400, "Fake: no prompt text in input.", type_="invalid_request_error",
                           code="invalid_value", param="input")
        partials = int(tool.get("partial_images") or 0)
        if self.partials_override is not None:
            partials = min(partials, self.partials_override)
        self._check_transparency(tool.get("model"), tool.get("background"), "tools[0].background")
        return {
            "transparent": tool.get("background") == "transparent",
            "model": model, "tool": tool, "previous": previous, "prompt": prompt, "input_images": images,
            "action": "edit" if (parent is not None or images) else "generate", "partials": partials,
            "store": payload.get("store", True) is not False, "tool_choice": payload.get("tool_choice", "auto"),
        }

    def _response_body(self, rid: str, plan: dict[str, Any], output: list[dict[str, Any]], status: str,
                       error: dict[str, Any] | None = None) -> dict[str, Any]:
        tool = {"action": "auto", "background": "auto", "moderation": "auto", "output_compression": 100,
                "output_format": "png", "partial_images": 0, "quality": "auto", "size": "auto", **plan["tool"]}
        body: dict[str, Any] = {
            "id": rid, "object": "response", "created_at": int(time.time()), "status": status,
            "model": plan["model"], "previous_response_id": plan["previous"], "parallel_tool_calls": True,
            "tool_choice": plan["tool_choice"], "tools": [tool], "output": output, "error": error,
            "incomplete_details": None, "store": plan["store"],
        }
        if status == "completed" and self.report_usage:
            image_in = 200 * plan["input_images"] + (200 if plan["previous"] else 0)
            body["usage"] = {
                "input_tokens": 120, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 160,
            }
            body["tool_usage"] = {
                "image_gen": {
                    "input_tokens": 30 + image_in,
                    "input_tokens_details": {"text_tokens": 30, "image_tokens": image_in},
                    "output_tokens": 272, "output_tokens_details": {"image_tokens": 272, "text_tokens": 0},
                    "total_tokens": 302 + image_in,
                },
                "web_search": {"num_requests": 0},
            }
        return body

    def _ig_item(self, number: int, plan: dict[str, Any], status: str, result: bytes | None = None,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": f"ig_fake_{number}", "type": "image_generation_call", "status": status,
            "action": plan["action"], "background": _background(plan), "output_format": "png",
            "quality": plan["tool"].get("quality", "auto"), "size": plan["tool"].get("size", "1024x1024"),
            "revised_prompt": f"{plan['prompt']} (revised)", "result": b64(result) if result else None,
        }
        if error is not None:
            item["error"] = error
        return item

    @staticmethod
    def _message_item(number: int, status: str, text: str) -> dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text else []
        return {"id": f"msg_fake_{number}", "type": "message", "role": "assistant", "status": status,
                "content": content}

    def _store(self, body: dict[str, Any], plan: dict[str, Any]) -> None:
        if plan["store"]:
            self.responses[body["id"]] = body

    @staticmethod
    def _moderation_error(fault: Fault) -> dict[str, Any]:
        return {
            "code": "moderation_blocked", "message": "Your request was rejected by the safety system.",
            "param": None, "type": "image_generation_user_error",
            "moderation_details": {"moderation_stage": fault.opts.get("stage", "output"), "categories": ["violence"]},
        }

    @staticmethod
    def _failure(fault: Fault) -> dict[str, Any]:
        return {"code": fault.opts.get("code", "server_error"),
                "message": fault.opts.get("message", "The server had an error processing your request.")}

    def _responses_json(self, request_id: str, plan: dict[str, Any], fault: Fault | None) -> web.Response:
        number, image = self._new_image(transparent=plan["transparent"])
        rid = f"resp_fake_{number}"
        text = "Here is your image."
        if fault is not None and fault.kind == "ig_failed":
            output = [self._ig_item(number, plan, "failed", error=self._moderation_error(fault))]
            return self._json(self._response_body(rid, plan, output, "completed"), request_id)
        if fault is not None and fault.kind == "response_failed":
            body = self._response_body(rid, plan, [], "failed", error=self._failure(fault))
            return self._json(body, request_id)
        if fault is not None:
            raise ApiError(500, "The server had an error while processing your request.",
                           type_="server_error", code=None)
        output = [self._ig_item(number, plan, "completed", image), self._message_item(number, "completed", text)]
        body = self._response_body(rid, plan, output, "completed")
        self._produced(image)
        self._store(body, plan)
        return self._json(body, request_id)

    def _drawing_events(self, number: int, plan: dict[str, Any], partials: int) -> list[tuple[str, dict[str, Any]]]:
        """From the image call's start to its last partial preview."""
        ig_id = f"ig_fake_{number}"
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.output_item.added", {"output_index": 0, "item": self._ig_item(number, plan, "in_progress")}),
            ("response.image_generation_call.in_progress", {"item_id": ig_id, "output_index": 0}),
            ("response.image_generation_call.generating", {"item_id": ig_id, "output_index": 0}),
        ]
        for index in range(partials):
            events.append(("response.image_generation_call.partial_image", {
                "item_id": ig_id, "output_index": 0, "partial_image_index": index,
                "partial_image_b64": b64(self._partial_png(index)), "background": _background(plan),
                "output_format": "png", "quality": plan["tool"].get("quality", "auto"),
                "size": plan["tool"].get("size", "1024x1024"),
            }))
        return events

    def _closing_events(self, number: int, plan: dict[str, Any], image: bytes) -> list[tuple[str, dict[str, Any]]]:
        """From the finished image to `response.completed` (whose response the caller fills in)."""
        ig_id, msg_id = f"ig_fake_{number}", f"msg_fake_{number}"
        text_parts = ["Here is ", "your image."]
        text = "".join(text_parts)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": msg_id, "output_index": 1, "content_index": 0}
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.image_generation_call.completed", {"item_id": ig_id, "output_index": 0}),
            ("response.output_item.done", {"output_index": 0, "item": self._ig_item(number, plan, "completed", image)}),
            ("response.output_item.added", {"output_index": 1, "item": self._message_item(number, "in_progress", "")}),
            ("response.content_part.added", {**where, "part": part}),
        ]
        events += [("response.output_text.delta", {**where, "delta": delta, "logprobs": []}) for delta in text_parts]
        events += [
            ("response.output_text.done", {**where, "text": text, "logprobs": []}),
            ("response.content_part.done", {**where, "part": {**part, "text": text}}),
            ("response.output_item.done", {"output_index": 1, "item": self._message_item(number, "completed", text)}),
            ("response.completed", {}),
        ]
        return events

    async def _responses_stream(self, request: web.Request, request_id: str, plan: dict[str, Any],
                                fault: Fault | None) -> web.StreamResponse:
        number, image = self._new_image(transparent=plan["transparent"])
        rid = f"resp_fake_{number}"
        sse = _Sse(request, request_id, self)
        await sse.open()
        await sse.send("response.created", {"response": self._response_body(rid, plan, [], "in_progress")})
        await sse.send("response.in_progress", {"response": self._response_body(rid, plan, [], "in_progress")})
        limit = plan["partials"] if fault is None else min(plan["partials"], int(fault.opts.get("after_partials", 0)))
        for type_, data in self._drawing_events(number, plan, limit):
            await sse.send(type_, data)
        drop_after_image = fault is not None and fault.kind == "stream_drop" and fault.opts.get("after_image")
        if fault is not None and not drop_after_image:
            return await self._stream_fault(request, sse, fault, rid, plan, number)
        output: list[dict[str, Any]] = []
        for type_, event in self._closing_events(number, plan, image):
            data = event
            if type_ == "response.completed":
                body = self._response_body(rid, plan, output, "completed")
                self._store(body, plan)
                data = {"response": body}
            await sse.send(type_, data)
            if type_ == "response.output_item.done":
                output.append(data["item"])
                if data["item"]["type"] == "image_generation_call":
                    self._produced(image)
                    if drop_after_image:
                        return await self._drop(request)
        return await sse.close()

    async def _stream_fault(self, request: web.Request, sse: _Sse, fault: Fault, rid: str,
                            plan: dict[str, Any], number: int) -> web.StreamResponse:
        if fault.kind == "ig_failed":
            failed = self._ig_item(number, plan, "failed", error=self._moderation_error(fault))
            await sse.send("response.output_item.done", {"output_index": 0, "item": failed})
            body = self._response_body(rid, plan, [failed], "completed")
            await sse.send("response.completed", {"response": body})
        elif fault.kind == "response_failed":
            body = self._response_body(rid, plan, [], "failed", error=self._failure(fault))
            await sse.send("response.failed", {"response": body})
        elif fault.kind == "error_event":
            failure = self._failure(fault)
            await sse.send("error", {"code": failure["code"], "message": failure["message"], "param": None})
        elif fault.kind == "stream_api_error":
            await sse.raw("error", {"error": {"type": fault.opts.get("type", "server_error"),
                                              "code": fault.opts.get("code", "server_error"),
                                              "message": "An error occurred while processing your request.",
                                              "param": None}})
        elif fault.kind == "stream_hang":
            await self._release.wait()
        elif fault.kind == "stream_drop":
            return await self._drop(request)
        return await sse.close()

    async def _get_response(self, request: web.Request) -> web.StreamResponse:
        response_id = request.match_info["response_id"]
        query = dict(request.query)
        self.record(Call(f"GET /v1/responses/{response_id}", params=query, headers=_headers(request)))

        async def body(request_id: str, fault: Fault | None) -> web.StreamResponse:
            run = self.runs.get(response_id)
            stored = run.body if run is not None else self.responses.get(response_id)
            if stored is None:
                raise _not_found(response_id)
            if query.get("stream") != "true":
                return self._json(stored, request_id)
            if run is None:
                raise ApiError(400, "Only responses created with background=true can be streamed again.",
                               type_="invalid_request_error", code=None, param="stream")
            after = int(query.get("starting_after", "-1"))
            return await self.runs.serve(request, request_id, run, after, fault)

        return await self._handle(request, "retrieve", body)

    async def _cancel_response(self, request: web.Request) -> web.StreamResponse:
        response_id = request.match_info["response_id"]
        self.record(Call(f"POST /v1/responses/{response_id}/cancel", headers=_headers(request)))

        async def body(request_id: str, fault: Fault | None) -> web.StreamResponse:
            run = self.runs.get(response_id)
            if run is None:
                if response_id in self.responses:
                    raise ApiError(400, "Only responses created with background=true can be cancelled.",
                                   type_="invalid_request_error", code=None, param="response_id")
                raise _not_found(response_id)
            self.runs.cancel(run)
            return self._json(run.body, request_id)

        return await self._handle(request, "cancel", body)

    async def _delete_response(self, request: web.Request) -> web.StreamResponse:
        response_id = request.match_info["response_id"]
        self.record(Call(f"DELETE /v1/responses/{response_id}", headers=_headers(request)))

        async def body(request_id: str, fault: Fault | None) -> web.StreamResponse:
            if self.runs.get(response_id) is None and response_id not in self.responses:
                raise _not_found(response_id)
            self.runs.forget(response_id)  # a running background response stops too
            self.responses.pop(response_id, None)
            self.deleted.append(response_id)
            return self._json({"id": response_id, "object": "response", "deleted": True}, request_id)

        return await self._handle(request, "delete", body)

    # ---- Images API ------------------------------------------------------------------------------------------

    async def _generations(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        self.record(Call("POST /v1/images/generations", params=payload, headers=_headers(request)))

        async def body(request_id: str, fault: Fault | None) -> web.StreamResponse:
            _require(payload, "prompt")
            _require(payload, "model")
            return await self._images_answer(request, request_id, payload, fault, "image_generation", 0)

        return await self._handle(request, "generations", body)

    async def _edits(self, request: web.Request) -> web.StreamResponse:
        fields: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        uploads: list[dict[str, Any]] = []
        problem: ApiError | None = None
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise AssertionError("FAKE: nested multipart is not expected")
            name = part.name or ""
            data = bytes(await part.read())
            if part.filename is None:
                fields[name] = data.decode("utf-8")
                continue
            content_type = part.headers.get("Content-Type", "")
            uploads.append({"field": name, "filename": part.filename, "content_type": content_type,
                            "size": len(data)})
            key = name if name not in files else f"{name}#{sum(1 for u in uploads if u['field'] == name) - 1}"
            files[key] = data
            if name in ("image", "image[]") and content_type not in ACCEPTED_UPLOAD_TYPES and problem is None:
                problem = ApiError(
                    400, f"Invalid file 'image': unsupported mimetype ('{content_type}'). Supported file formats "
                    "are 'image/jpeg', 'image/png', and 'image/webp'.", type_="invalid_request_error",
                    code="invalid_value", param="image",
                )
            elif name in ("image", "image[]") and not _is_image(data) and problem is None:
                problem = ApiError(400, "Invalid image file or mode for image 1, please check your image file.",
                                   type_="invalid_request_error", code="invalid_image_file", param="image")
        fields["_uploads"] = uploads
        self.record(Call("POST /v1/images/edits", params=fields, files=files, headers=_headers(request)))

        async def body(request_id: str, fault: Fault | None) -> web.StreamResponse:
            if problem is not None:
                raise problem
            if not any(u["field"] in ("image", "image[]") for u in uploads):
                raise ApiError(400, "Missing required parameter: 'image'.", type_="invalid_request_error",
                               code="missing_required_parameter", param="image")
            _require(fields, "prompt")
            _require(fields, "model")
            count = sum(1 for u in uploads if u["field"] in ("image", "image[]"))
            return await self._images_answer(request, request_id, fields, fault, "image_edit", count)

        return await self._handle(request, "edits", body)

    def _images_usage(self, input_images: int) -> dict[str, Any]:
        image_in = 200 * input_images
        return {"input_tokens": 28 + image_in, "input_tokens_details": {"text_tokens": 28, "image_tokens": image_in},
                "output_tokens": 272, "total_tokens": 300 + image_in}

    async def _images_answer(self, request: web.Request, request_id: str, params: dict[str, Any],
                             fault: Fault | None, prefix: str, input_images: int) -> web.StreamResponse:
        stream = params.get("stream") in (True, "true")
        size = str(params.get("size", "1024x1024"))
        quality = str(params.get("quality", "auto"))
        background = params.get("background")
        self._check_transparency(params.get("model"), background, "background")
        if background == "transparent" and params.get("output_format", "png") not in ("png", "webp"):
            raise ApiError(400, "Transparent background requires output_format png or webp.",
                           type_="invalid_request_error", code="invalid_value", param="output_format")
        _, image = self._new_image(transparent=background == "transparent")
        common = {"background": "transparent" if background == "transparent" else "opaque",
                  "output_format": str(params.get("output_format", "png")), "quality": quality, "size": size}
        if not stream:
            if fault is not None and fault.kind in ("stream_hang", "stream_drop"):
                return await self._connection_fault(request, fault, request_id)
            if fault is not None and fault.kind == "ig_failed":
                raise self._fault_error(Fault("moderation", 1, None, {"stage": "output"}), request_id)
            if fault is not None:
                raise ApiError(500, "The server had an error while processing your request.",
                               type_="server_error", code=None)
            self._produced(image)
            body: dict[str, Any] = {"created": int(time.time()), **common, "data": [{"b64_json": b64(image)}]}
            if self.report_usage:
                body["usage"] = {**self._images_usage(input_images),
                                 "output_tokens_details": {"image_tokens": 272, "text_tokens": 0}}
            return self._json(body, request_id)
        sse = _Sse(request, request_id, self, sequence=False)
        await sse.open()
        partials = int(params.get("partial_images") or 0)
        if self.partials_override is not None:
            partials = min(partials, self.partials_override)
        if fault is not None:
            partials = min(partials, int(fault.opts.get("after_partials", 0)))
        for index in range(partials):
            await sse.send(f"{prefix}.partial_image", {
                "b64_json": b64(self._partial_png(index)), "partial_image_index": index,
                "created_at": int(time.time()), **common,
            })
        if fault is not None:
            if fault.kind in ("stream_api_error", "error_event", "response_failed"):
                await sse.raw("error", {"type": "error", "error": {
                    "type": fault.opts.get("type", "server_error"), "code": fault.opts.get("code", "server_error"),
                    "message": "An error occurred while processing your request.", "param": None}})
            elif fault.kind == "ig_failed":
                error = self._moderation_error(fault)
                await sse.raw("error", {"type": "error", "error": error})
            elif fault.kind == "stream_hang":
                await self._release.wait()
            elif fault.kind == "stream_drop":
                return await self._drop(request)
            return await sse.close()
        completed: dict[str, Any] = {"b64_json": b64(image), "created_at": int(time.time()), **common}
        if self.report_usage:
            completed["usage"] = self._images_usage(input_images)
        self._produced(image)
        await sse.send(f"{prefix}.completed", completed)
        return await sse.close()


class _Sse:
    """Writes `event: <type>` / `data: <json>` frames; numbers them when the API does."""

    def __init__(self, request: web.Request, request_id: str, fake: FakeOpenAI, *, sequence: bool = True) -> None:
        self.request = request
        self.fake = fake
        self.sequence = sequence
        self.number = 0
        self.response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "x-request-id": request_id}
        )

    async def open(self) -> None:
        await self.response.prepare(self.request)

    async def send(self, type_: str, data: dict[str, Any]) -> None:
        payload = {"type": type_, **data}
        if self.sequence:
            payload["sequence_number"] = self.number
            self.number += 1
        await self.raw(type_, payload)

    async def raw(self, event: str, payload: dict[str, Any]) -> None:
        if self.fake.event_delay:
            await asyncio.sleep(self.fake.event_delay)
        await self.response.write(f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode())

    async def close(self) -> web.StreamResponse:
        await self.response.write_eof()
        return self.response


def _not_found(response_id: str) -> ApiError:
    return ApiError(404, f"Response with id '{response_id}' not found.", type_="invalid_request_error",
                    code=None, param="response_id")


def _background(plan: dict[str, Any]) -> str:
    return "transparent" if plan["transparent"] else "opaque"


def _headers(request: web.Request) -> dict[str, str]:
    return {key.lower(): value for key, value in request.headers.items()}


def _content_parts(value: Any) -> list[dict[str, Any]]:
    """Flatten Responses `input` into its content parts (a plain string input has none)."""
    parts: list[dict[str, Any]] = []
    if not isinstance(value, list):
        return parts
    for item in value:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        if isinstance(content, str):
            parts.append({"type": "input_text", "text": content})
        elif isinstance(content, list):
            parts.extend(p for p in content if isinstance(p, dict))
    return parts


def _check_data_url(url: str, param: str) -> None:
    prefix, sep, data = url.partition(",")
    ok_prefix = prefix.startswith("data:image/") and prefix.endswith(";base64") and sep
    try:
        raw = base64.b64decode(data, validate=True) if ok_prefix else b""
    except (binascii.Error, ValueError):
        raw = b""
    if not raw or not _is_image(raw):
        raise ApiError(
            400, f"Invalid '{param}'. Expected a base64-encoded data URL with an image MIME type (e.g. "
            "'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got an invalid value.",
            type_="invalid_request_error", code="invalid_value", param=param,
        )


def _is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception:
        return False
    return True


def _require(params: dict[str, Any], name: str) -> None:
    if not params.get(name):
        raise ApiError(400, f"Missing required parameter: '{name}'.", type_="invalid_request_error",
                       code="missing_required_parameter", param=name)
