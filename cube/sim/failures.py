"""Node failures for a simulation: scripted outages or random ones.

When a node goes down, the tasks running there lose their work and are placed again
(from the start) wherever the scheduler says, or wait; when it comes back it is empty.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outage:
    """Node ``node`` (an index into the table) is down from ``at`` until ``back``
    (``None``: for good)."""

    node: int
    at: float
    back: float | None = None


@dataclass(frozen=True)
class Failures:
    """Every node fails at random, independently: up for an exponential time with mean
    ``mtbf`` seconds, then down for one with mean ``mttr``. Seeded, so runs repeat.

    No new failures start once the workload has drained (nothing left to arrive or
    run), so a simulation with failures still ends."""

    mtbf: float
    mttr: float
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mtbf <= 0 or self.mttr <= 0:
            raise ValueError("mtbf and mttr must be positive")
