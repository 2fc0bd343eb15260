"""Metrics (Prometheus text format), logging setup and the readiness signal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: What each metric means (the HELP line); a metric not listed here cannot be recorded.
HELP = {
    "cleanup_operator_reconciles_total": "Reconciles by kind and result (ok, error, status_error).",
    "cleanup_operator_status_patches_total": "Status patches sent, by kind.",
    "cleanup_operator_events_total": "Kubernetes events posted, by kind and reason.",
    "cleanup_operator_reconcile_duration_seconds": "Seconds one reconcile took, by kind.",
    "cleanup_operator_objects": "Objects the scheduler knows, by kind.",
    "cleanup_operator_objects_due_waiting": "Objects due for a reconcile but waiting for a slot.",
    "cleanup_operator_reconciles_in_flight": "Reconciles running now.",
    "cleanup_operator_vendor_requests_in_flight": "Vendor requests in flight, by endpoint.",
    "cleanup_operator_vendor_endpoint_paused": "1 while an endpoint is paused after timeouts, by endpoint.",
    "cleanup_operator_leader": "1 on the replica holding the leader-election lease, else 0.",
}

Collector = Callable[["Metrics"], None]


class Metrics:
    """The operator's metrics on prometheus-client, in a registry of their own (not the process-wide
    default, so tests and several operators in one process never share numbers).

    Metrics are made on first use with the label names of that use; ``collectors`` refresh gauges
    that are read from live state (the scheduler's queue, the endpoint gates) just before a scrape.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.collectors: list[Collector] = []

    def _metric(self, cls: type[Any], name: str, labels: dict[str, str], **kw: Any) -> Any:
        with self._lock:
            metric = self._metrics.get(name)
            if metric is None:
                metric = self._metrics[name] = cls(
                    name, HELP[name], labelnames=sorted(labels), registry=self.registry, **kw
                )
        return metric.labels(**labels) if labels else metric

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        self._metric(Counter, name, labels).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        self._metric(Gauge, name, labels).set(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        self._metric(Histogram, name, labels, buckets=LATENCY_BUCKETS).observe(value)

    def value(self, name: str, **labels: str) -> float:
        """A counter's value (0 before its first increment)."""
        sample = self.registry.get_sample_value(name if name.endswith("_total") else f"{name}_total", labels)
        return sample or 0

    def gauge(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def render(self) -> str:
        for collect in list(self.collectors):
            collect(self)
        return generate_latest(self.registry).decode()


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


async def serve_metrics(metrics: Metrics, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    # A scraper's keep-alive connection must not hold a stopping operator for aiohttp's default minute.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
