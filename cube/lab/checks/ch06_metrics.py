"""Chapter 6: CPU use from two readings of the counters, written by the learner.

``cpu_busy(before, after) -> percent`` is held to Cube's own :func:`cube.node.busy_percent`
on the same inputs: made-up counters that each test one rule (idle and iowait are idle
time; user, nice, system, irq, softirq and steal are busy; guest time is already in
user; no time passed means 0, not a division by zero; an empty ``before`` means "since
boot"), the ``CpuStats`` a real worker reports over HTTP (with its ``"id": "cpu"``
entry), and the worker's own stats collector, running with the learner's function in
place of Cube's, sampling every 0.2 s while the nemesis keeps every core busy for a
second. The picture plots both answers over those seconds, the busy second shaded.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psutil

from cube.client import CubeError
from cube.lab.checks.core import Check
from cube.lab.verdict import Verdict
from cube.node import busy_percent
from cube.worker import stats

CpuBusy = Callable[[Mapping[str, Any], Mapping[str, Any]], float]
HINTS = (
    (
        "the counters are totals since boot: what matters is how much each grew between the "
        "two readings"
    ),
    (
        "busy share = busy jiffies that passed / all jiffies that passed; idle and iowait are"
        " idle, guest is already in user"
    ),
    (
        "add up idle and iowait for each reading, and user, nice, system, irq, softirq and "
        "steal for busy time; of the total time that passed between the readings, what "
        "share was busy? Return 0 when no time passed"
    ),
)
BURN = "import time\nend = time.monotonic() + {0}\nwhile time.monotonic() < end: pass"
CASES: list[tuple[str, dict[str, float], dict[str, float]]] = [
    ("150 busy and 50 idle jiffies", {"user": 1000, "idle": 9000}, {"user": 1150, "idle": 9050}),
    ("all idle", {"user": 5, "idle": 100}, {"user": 5, "idle": 300}),
    ("iowait is waiting, not working", {"idle": 10, "iowait": 0}, {"idle": 60, "iowait": 50}),
    (
        "system, irq, softirq and steal are busy",
        {"system": 0, "irq": 0, "softirq": 0, "steal": 0, "idle": 0},
        {"system": 10, "irq": 10, "softirq": 10, "steal": 10, "idle": 60},
    ),
    (
        "guest time is already counted in user",
        {"user": 0, "guest": 0, "idle": 0},
        {"user": 50, "guest": 50, "idle": 50},
    ),
    ("no time passed", {"user": 7, "idle": 7}, {"user": 7, "idle": 7}),
    ("no earlier reading: since boot", {}, {"user": 300, "nice": 100, "idle": 600}),
]


def check_cpu_busy(cpu_busy: CpuBusy, worker: Any) -> Verdict:
    """Hold ``cpu_busy`` to Cube's formula; ``worker`` is a WorkerClient for real stats."""
    check = Check("06 · CPU use between two readings", HINTS, "CPU busy, every 0.2 s")
    figure = None
    with check:
        for what, before, after in CASES:
            _compare(check, cpu_busy, what, before, after)
        first = _stats(check, worker)
        time.sleep(0.25)
        _compare(
            check, cpu_busy, "two /stats readings of a real worker", first, _stats(check, worker)
        )
        mine, cube, burn = _under_load(check, cpu_busy)
        off = [
            (i, m, c) for i, (m, c) in enumerate(zip(mine, cube, strict=True)) if abs(m - c) > 0.5
        ]
        if off:
            i, m, c = off[0]
            check.fail(
                f"on real counters ({len(off)} of {len(cube)} intervals) you said "
                f"{m:.1f}% where Cube says {c:.1f}% (interval {i + 1})"
            )
        figure = _plot(mine, cube, burn)
    return check.verdict("your figure matches Cube's on every reading", figure=figure)


def _stats(check: Check, worker: Any) -> Any:
    """The worker's CPU counters; a worker that does not answer is the environment."""
    try:
        return worker.stats()["CpuStats"]
    except CubeError as exc:
        check.environment = True
        check.stop(
            f"the worker does not answer ({exc.message}): if the clean-up cell stopped the "
            "cluster, run the cell that starts it again (cluster = LocalCluster(...)"
            ".start(), near the top), then this check"
        )


def _value(
    check: Check, cpu_busy: CpuBusy, before: Mapping[str, Any], after: Mapping[str, Any]
) -> float:
    value = check.call(cpu_busy, "cpu_busy(before, after)", dict(before), dict(after))
    check.require(isinstance(value, int | float), f"cpu_busy returned {value!r}, not a number")
    return float(value)


def _compare(
    check: Check, cpu_busy: CpuBusy, what: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> None:
    mine, cube = _value(check, cpu_busy, before, after), busy_percent(before, after)
    if abs(mine - cube) > 0.01:
        check.fail(f"{what}: you said {mine:.2f}%, Cube says {cube:.2f}%")
    elif not 0 <= mine <= 100:
        check.fail(f"{what}: {mine:.2f}% is not a percentage")


def _under_load(
    check: Check, cpu_busy: CpuBusy, every: float = 0.2, burn: tuple[float, float] = (0.2, 0.8)
) -> tuple[list[float], list[float], tuple[float, float]]:
    """The worker's own stats collector, with ``cpu_busy`` in place of Cube's formula,
    sampled every ``every`` s while one busy process per core runs during ``burn``.
    Returns your figures, Cube's on the very same readings, and ``burn``."""
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def spy(before: Mapping[str, Any], after: Mapping[str, Any]) -> float:
        pairs.append((dict(before), dict(after)))
        return _value(check, cpu_busy, before, after)

    mine, start, burners = [], time.monotonic(), []
    with _installed(spy):
        collector = stats.StatsCollector()
        try:
            while (now := time.monotonic() - start) < burn[1] + 0.2:
                if not burners and now >= burn[0]:
                    code = BURN.format(burn[1] - burn[0])
                    burners = [
                        subprocess.Popen([sys.executable, "-I", "-S", "-c", code])
                        for _ in range(psutil.cpu_count() or 1)
                    ]
                time.sleep(every)
                mine.append(collector.cpu_percent(0))
        finally:
            for proc in burners:
                proc.kill()
                proc.wait()
    return mine, [busy_percent(a, b) for a, b in pairs], burn


@contextmanager
def _installed(formula: CpuBusy) -> Iterator[None]:
    """The worker's stats module computes CPU use with ``formula`` in the block."""
    saved = stats.busy_percent
    stats.busy_percent = formula
    try:
        yield
    finally:
        stats.busy_percent = saved


def _plot(mine: list[float], cube: list[float], burn: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 2.6), layout="constrained")
    ax = figure.add_subplot()
    t = [0.2 * (i + 1) for i in range(len(cube))]
    ax.axvspan(*burn, color="#fde68a", label="every core kept busy (the nemesis)")
    ax.plot(t, cube, "s-", color="#9ca3af", label="Cube's busy_percent", lw=3)
    ax.plot(t, mine, "o--", color="#2563eb", label="your cpu_busy")
    ax.set(xlabel="seconds", ylabel="CPU busy %", ylim=(-5, 105))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return figure
