"""Shared machinery of the fake servers: an aiohttp app on 127.0.0.1:0, a call log and `wait_for`."""

from __future__ import annotations

import asyncio
import traceback
from dataclasses import dataclass, field
from typing import Any, Self, cast

from aiohttp import web


@dataclass
class Call:
    method: str  # an API method name ("sendPhoto") or "VERB /path"
    params: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """Subclasses add routes in `setup_routes`. Use as `async with Fake() as fake:`.

    Every handled request should be recorded with `record(Call(...))`; tests then `await wait_for(...)`
    instead of sleeping. Exceptions inside a handler become a 400 `FAKE BUG` response (never a 5xx, which
    some clients retry for seconds) and are kept in `fake_errors`, which fixtures assert is empty."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.fake_errors: list[str] = []
        self.app_errors: list[BaseException] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.app = web.Application(middlewares=[self._catch_bugs], client_max_size=200 * 1024 * 1024)
        self.setup_routes(self.app)

    def setup_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(self.app, shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = cast(asyncio.Server | None, site._server)
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.before_stop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def before_stop(self) -> None:
        """Wake parked handlers (long polls) so cleanup does not wait for them."""

    @web.middleware
    async def _catch_bugs(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException:
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            text = f"FAKE BUG in {request.method} {request.path}: {traceback.format_exc()}"
            self.fake_errors.append(text)
            return web.json_response({"fake_bug": text}, status=400)

    def record(self, call: Call) -> None:
        self.calls.append(call)
        self._notify()

    def _notify(self) -> None:
        async def _wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(_wake())

    def report_error(self, error: BaseException) -> None:
        """Hook for the client library's error handler: makes `wait_for` fail at once."""
        self.app_errors.append(error)
        self._notify()

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> Call:
        """Wait until `method` has been called `count` times and return the count-th call."""

        async def _wait() -> Call:
            async with self._changed:
                while True:
                    if self.app_errors:
                        raise AssertionError(f"client error while waiting for {method}: {self.app_errors!r}")
                    if self.fake_errors:
                        raise AssertionError(self.fake_errors[0])
                    matching = self.calls_to(method)
                    if len(matching) >= count:
                        return matching[count - 1]
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            seen = [c.method for c in self.calls]
            raise AssertionError(f"timed out waiting for {method} x{count}; calls so far: {seen}") from None
