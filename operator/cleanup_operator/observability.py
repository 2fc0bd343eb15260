"""Metrics (Prometheus text format), logging setup and the readiness signal."""

from __future__ import annotations

import threading
from collections import Counter

from aiohttp import web


class Metrics:
    """A few counters, enough to see reconcile rates and vendor errors, and a few gauges (leader
    status); thread-safe, dependency-free."""

    def __init__(self) -> None:
        self._counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._lock = threading.Lock()

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._gauges[(name, tuple(sorted(labels.items())))] = value

    def gauge(self, name: str, **labels: str) -> float | None:
        with self._lock:
            return self._gauges.get((name, tuple(sorted(labels.items()))))

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        with self._lock:
            self._counters[(name, tuple(sorted(labels.items())))] += amount

    def value(self, name: str, **labels: str) -> int:
        with self._lock:
            return self._counters[(name, tuple(sorted(labels.items())))]

    def render(self) -> str:
        lines = []
        with self._lock:
            items: list[tuple[tuple[str, tuple[tuple[str, str], ...]], float, str]] = [
                (key, value, "counter") for key, value in self._counters.items()
            ]
            items += [(key, value, "gauge") for key, value in self._gauges.items()]
        items.sort()
        seen: set[str] = set()
        for (name, labels), value, type_ in items:
            if name not in seen:
                lines.append(f"# TYPE {name} {type_}")
                seen.add(name)
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            text = str(int(value)) if float(value).is_integer() else repr(float(value))
            lines.append(f"{name}{{{label_text}}} {text}" if label_text else f"{name} {text}")
        return "\n".join(lines) + "\n"


async def serve_metrics(metrics: Metrics, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
