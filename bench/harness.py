"""Repetitions, figures, the table and the JSON file.

Only ratios between systems measured in the same run mean anything: absolute
figures on a shared 2-core machine move by a quarter between runs.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

SYSTEMS = ("pyfi", "dramatiq", "celery", "raw")


@dataclass
class Figure:
    """One measured quantity of one workload on one system, over repetitions."""

    workload: str
    metric: str  # e.g. "calls/s", "s", "ms"
    higher_is_better: bool
    values: dict[str, list[float]] = field(default_factory=dict)  # by system

    def add(self, system: str, value: float) -> None:
        self.values.setdefault(system, []).append(value)

    def median(self, system: str) -> float | None:
        values = self.values.get(system)
        return statistics.median(values) if values else None

    def ratio(self, system: str, other: str) -> float | None:
        """pyfi's median over ``other``'s: above 1 means more (of calls/s, or of seconds)."""
        mine, theirs = self.median(system), self.median(other)
        if mine is None or not theirs:
            return None
        return mine / theirs


def timed(action: Callable[[], Any]) -> float:
    """Wall-clock seconds of one run of ``action``."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def spread(values: list[float] | None, digits: int) -> str:
    if not values:
        return "-"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def table(figures: list[Figure]) -> str:
    """A plain-text table: median (min-max) per system, and pyfi's ratios."""
    header = ["workload", "metric", *SYSTEMS, "pyfi/dramatiq", "pyfi/celery", "pyfi/raw"]
    rows = [header]
    for figure in figures:
        digits = 0 if figure.metric.endswith(("/s", "/call")) else 3
        ratios = []
        for other in ("dramatiq", "celery", "raw"):
            ratio = figure.ratio("pyfi", other)
            ratios.append("-" if ratio is None else f"{ratio:.2f}")
        better = "↑" if figure.higher_is_better else "↓"
        rows.append(
            [
                figure.workload,
                f"{figure.metric} {better}",
                *(spread(figure.values.get(s), digits) for s in SYSTEMS),
                *ratios,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import os
    import platform

    def version(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "rabbitmq": version(["rabbitmqctl", "version"]),
        "redis": version(["redis-server", "--version"]),
        "postgresql": version(["psql", "--version"]),
    }


def write_json(
    path: str, figures: list[Figure], meta: dict[str, Any], cpu: list[Figure] | None = None
) -> None:
    """The figures and what they were measured on; ``cpu`` (µs per call by role) apart."""
    data = {"meta": meta, "figures": [asdict(f) for f in figures]}
    data["cpu"] = [asdict(f) for f in cpu or []]
    with open(path, "w") as out:
        json.dump(data, out, indent=2)
