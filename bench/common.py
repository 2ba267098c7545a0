"""What the benchmarks share: percentiles and a uniform way to print results."""

from __future__ import annotations

import platform
import statistics

import psutil


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def summary(values: list[float]) -> str:
    return f"p50 {ms(statistics.median(values))}, p99 {ms(percentile(values, 99))}, n={len(values)}"


def header(title: str) -> None:
    print(f"\n== {title}")


def machine() -> str:
    cores = psutil.cpu_count()
    memory = psutil.virtual_memory().total / (1 << 30)
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{python}, {cores} cores, {memory:.0f} GiB"
