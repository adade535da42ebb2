"""Seeded fault schedules for the fake OpenAI server, and a counting wrapper around the provider port.

The schedule is consumed in the order requests reach the fake (retries included): request k gets fault k.
Kinds (platform-limits T2): 1% HTTP 500, 2% 429 with a short retry-after, 0.5% safety refusals (400
moderation_blocked), 0.5% hangs past the provider timeout; the rest answer normally ("slow" 0 s)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from core.ports import GeneratedImage, ImageJob, ImageProvider, ProviderEvents
from tests.fakes.fake_openai import FakeOpenAI

MIX = (("server_error", 0.01), ("rate_limit", 0.02), ("moderation", 0.005), ("hang", 0.005))


@dataclass
class FaultPlan:
    seed: int
    kinds: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, seed: int, length: int, mix: tuple[tuple[str, float], ...] = MIX) -> FaultPlan:
        rng = random.Random(seed)
        plan = cls(seed)
        for _ in range(length):
            draw, kind = rng.random(), "ok"
            for name, share in mix:
                if draw < share:
                    kind = name
                    break
                draw -= share
            plan.kinds.append(kind)
        return plan

    def load(self, fake: FakeOpenAI, retry_after: float = 0.02) -> None:
        for kind in self.kinds:
            if kind == "ok":
                fake.fail_next("slow", seconds=0)
            elif kind == "rate_limit":
                fake.fail_next("rate_limit", retry_after=retry_after)
            else:
                fake.fail_next(kind)

    def consumed(self, requests: int) -> Counter[str]:
        """The faults the first `requests` requests received."""
        if requests > len(self.kinds):
            raise AssertionError(f"the fault plan ran out ({requests} requests, {len(self.kinds)} planned)")
        return Counter(self.kinds[:requests])


class CountingProvider:
    """Our own port, wrapped: counts concurrent `create` calls (what the round service's global cap governs)."""

    def __init__(self, inner: ImageProvider) -> None:
        self.inner = inner
        self.calls = 0
        self.in_flight = 0
        self.peak = 0

    @property
    def background(self) -> bool:
        return self.inner.background

    async def create(self, job: ImageJob, events: ProviderEvents) -> GeneratedImage:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self.inner.create(job, events)
        finally:
            self.in_flight -= 1

    async def resume(self, response_id: str, after_seq: int | None, events: ProviderEvents) -> GeneratedImage:
        return await self.inner.resume(response_id, after_seq, events)

    async def cancel(self, response_id: str) -> None:
        await self.inner.cancel(response_id)

    async def delete(self, response_id: str) -> bool:
        return await self.inner.delete(response_id)

    async def aclose(self) -> None:
        await self.inner.aclose()
