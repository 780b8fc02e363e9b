"""Prometheus metrics of ``stamp serve`` (``GET /metrics``), in a registry of its own.

Requests by route and status with a latency histogram; API messages by final
state and provider; the queue's depth by state and each pool's provider circuit
states, read when scraped. Labels are route templates, pool and provider
names: never a path with an id, an address or a key.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_BREAKER_STATES = ("closed", "open", "half_open", "refused", "quota_used")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "stamp_http_requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stamp_http_request_seconds",
            "Time to answer, by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.messages = Counter(
            "stamp_api_messages",
            "API messages settled, by state and provider",
            ["state", "provider"],
            registry=self.registry,
        )
        self.accepted = Counter(
            "stamp_api_messages_accepted",
            "API messages queued, by pool and mode (sync/async/smtp)",
            ["pool", "mode"],
            registry=self.registry,
        )
        self.queue = Gauge(
            "stamp_api_queue_messages",
            "API messages in the store, by state",
            ["state"],
            registry=self.registry,
        )
        self.breaker = Gauge(
            "stamp_provider_state",
            "1 for the state each pool's provider is in",
            ["pool", "provider", "state"],
            registry=self.registry,
        )

    def set_queue(self, counts: dict[str, int]) -> None:
        from stampcli.service.api_send import STATES

        for state in STATES:
            self.queue.labels(state).set(counts.get(state, 0))

    def set_breaker(self, pool: str, provider: str, state: str) -> None:
        for s in _BREAKER_STATES:
            self.breaker.labels(pool, provider, s).set(1 if s == state else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
