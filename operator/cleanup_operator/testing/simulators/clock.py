"""A clock moved by hand, for the simulators' time-driven state (runs, prunes, rate windows).

Every simulator reads "now" through its ``clock`` attribute; a test that sets it to a
:class:`ManualClock` and calls :meth:`ManualClock.advance` gets exact, load-independent progress
instead of racing a real clock with sleeps.
"""

from __future__ import annotations

import threading

__all__ = ["ManualClock"]


class ManualClock:
    """Seconds that move only when :meth:`advance` (or :meth:`set`) is called; thread-safe."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    @property
    def now(self) -> float:
        return self()

    def advance(self, seconds: float) -> float:
        """Move forward ``seconds`` (never back); returns the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: float) -> None:
        """Jump to ``when``, which must not be earlier than now."""
        with self._lock:
            if when < self._now:
                raise ValueError("a clock does not go back")
            self._now = when
