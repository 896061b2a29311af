"""Measurement helpers for `make bench`: interleaved A/B timing, spread, and how busy the machine
was while a section ran (other processes' CPU use makes timings on shared machines meaningless,
so every section records it and the report shows it next to the figures)."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Summary:
    """Median and spread of repeated measurements."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, fmt: str = "{:.2f}") -> str:
        return f"{fmt.format(self.median)} ({fmt.format(self.low)}-{fmt.format(self.high)}, n={self.n})"


def interleaved(sides: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Each side measured once per round, sides alternating (A B, then B A, ...) so slow drifts
    in machine load hit both alike; `warmup` rounds first, discarded. A side returns its own
    figure (e.g. samples/s). Ratios of the same round are what the report leads with."""
    names = list(sides)
    values: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        measured = {name: sides[name]() for name in order}
        if round_index >= warmup:
            for name in names:
                values[name].append(measured[name])
    return values


def paired_ratios(numerator: list[float], denominator: list[float]) -> Summary:
    return Summary.of([a / b for a, b in zip(numerator, denominator, strict=True)])


def _busy_seconds() -> float | None:
    """All CPUs' busy time since boot (Linux /proc/stat), in seconds."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(value) for value in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Load:
    """Machine load around one section: load averages at start and end, and the cores other
    processes kept busy meanwhile (all CPU busy time minus this bench's own and its children's)."""

    loadavg_start: float
    loadavg_end: float = float("nan")
    wall_s: float = float("nan")
    foreign_cores: float | None = None

    def text(self) -> str:
        foreign = "n/a" if self.foreign_cores is None else f"{self.foreign_cores:.2f}"
        return f"load {self.loadavg_start:.2f} -> {self.loadavg_end:.2f}, other processes {foreign} cores"


@dataclass
class LoadLog:
    sections: dict[str, Load] = field(default_factory=dict)

    @contextmanager
    def section(self, name: str) -> Iterator[Load]:
        load = Load(os.getloadavg()[0])
        busy, own, start = _busy_seconds(), _own_seconds(), time.perf_counter()
        try:
            yield load
        finally:
            load.wall_s = time.perf_counter() - start
            load.loadavg_end = os.getloadavg()[0]
            end_busy = _busy_seconds()
            if busy is not None and end_busy is not None and load.wall_s > 0:
                load.foreign_cores = max(0.0, (end_busy - busy) - (_own_seconds() - own)) / load.wall_s
            self.sections[name] = load

    def to_dict(self) -> dict[str, Any]:
        return {name: asdict(load) for name, load in self.sections.items()}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else float("nan")
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory, 1), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": "cpu"}
    if torch.cuda.is_available():
        info.update(device="cuda", gpu=torch.cuda.get_device_name(0))
    return info


def commit(repo: Path) -> str:
    """HEAD's short hash, `+dirty` when the tree has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def timed_command(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
                  timeout: float | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of a command (it must succeed) and its result."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, result
