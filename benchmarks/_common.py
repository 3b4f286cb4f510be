"""Timing helpers shared by the benchmarks (no detector imports: keep them cheap)."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds; warm-up calls are not counted."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def latency_percentiles_us(fn: Callable[[], Any], calls: int, warmup: int = 20) -> dict[str, float]:
    """p50/p90/p99 of single-call latency in microseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e3)
    samples.sort()

    def pct(q: float) -> float:
        return samples[min(len(samples) - 1, int(round(q * (len(samples) - 1))))]

    return {"p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99), "calls": calls}


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON via a temp file in the same directory + os.replace (no torn files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
