"""What a quiet cluster costs: CPU of a manager and 3 workers doing nothing, over 30 s.

A LocalCluster (process runtime) is measured twice, each time after it settled: with no
task, and with one task running (with a health check). The figure is the CPU time the
four Cube processes used (user + system, their task processes not included), as a share
of one core. Liveness probes (once a second per worker), the workers' inspection of what
they run, health checks and blocking queries that wait without work are all in it.

Run: ``python -m bench bench_idle``. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import time

import psutil

from bench.common import header
from cube.cluster import LocalCluster
from cube.task import State

SECONDS = 30.0


def cpu_share(cluster: LocalCluster, seconds: float) -> dict[str, float]:
    """Each Cube process's CPU over ``seconds``, as a share of one core."""
    procs = {c.name: psutil.Process(c.proc.pid) for c in cluster.components() if c.proc}
    before = {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}
    time.sleep(seconds)
    return {n: (sum(p.cpu_times()[:2]) - before[n]) / seconds for n, p in procs.items()}


def report(label: str, shares: dict[str, float]) -> None:
    parts = ", ".join(f"{n} {s * 100:.2f} %" for n, s in shares.items())
    print(f"{label:<28} total {sum(shares.values()) * 100:.2f} % of a core ({parts})")


def main(seconds: float = SECONDS) -> None:
    header(f"idle cluster: CPU of a manager and 3 workers over {seconds:g} s (goal < 1 %)")
    with LocalCluster(workers=3, runtime="process") as cluster:
        time.sleep(3)
        report("no task", cpu_share(cluster, seconds))
        task = cluster.client.submit(
            {"Name": "idle", "Image": cluster.image, "HealthCheck": "/health"}
        )
        cluster.client.wait_for(task.id, State.Running, timeout=30)
        time.sleep(3)
        report("one task running", cpu_share(cluster, seconds))
        cluster.client.stop(task.id)
        cluster.client.wait_for(task.id, State.Completed, timeout=30)


if __name__ == "__main__":
    main()
