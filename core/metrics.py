"""Prometheus metrics, one registry per process (tests build their own through `Metrics()`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rounds = Counter(
            "easel_rounds",
            "Rounds finished, by outcome and platform",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "easel_refusals",
            "Refusals sent to users, by reason",
            ["platform", "reason"],
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "easel_provider_latency_seconds",
            "Time an image call took, successful or not",
            ["route"],
            buckets=(0.05, 0.25, 1, 2.5, 5, 10, 20, 40, 60, 120, 240, 600),
            registry=self.registry,
        )
        self.queue_depth = Gauge("easel_queue_depth", "Rounds waiting for a provider slot", registry=self.registry)
        self.in_flight = Gauge("easel_rounds_in_flight", "Image calls in flight", registry=self.registry)
        self.credits_spent = Counter(
            "easel_credits_spent",
            "Credits committed for delivered rounds",
            ["platform"],
            registry=self.registry,
        )
