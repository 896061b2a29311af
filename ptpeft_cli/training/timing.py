"""Wall-clock sections of a run, reported as the `time/*` metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Accumulates seconds per named section (a section may run several times)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.origin = time.perf_counter()

    def mark(self, name: str) -> None:
        """Seconds from the watch's start to the first call under `name` (e.g. to the first step)."""
        self.seconds.setdefault(name, time.perf_counter() - self.origin)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
