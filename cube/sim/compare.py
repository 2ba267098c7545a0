"""Several schedulers on the same workload and cluster, side by side."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cube.node import NodeTable
from cube.scheduler import Scheduler
from cube.sim import plots
from cube.sim.engine import simulate
from cube.sim.failures import Failures, Outage
from cube.sim.result import Result
from cube.sim.workload import Workload

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _share(v: float) -> str:
    return f"{v:.1%}"


def _seconds(v: float) -> str:
    return f"{v:,.1f}"


# (metric, heading, format) for the printed table; rows() has every metric, unformatted.
SHOWN: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("scheduler", "scheduler", str),
    ("cpu_utilisation", "cpu", _share),
    ("memory_utilisation", "memory", _share),
    ("stranded_cpu", "stranded cpu", _share),
    ("stranded_memory", "stranded memory", _share),
    ("wait_p50", "wait p50 (s)", _seconds),
    ("wait_p99", "wait p99 (s)", _seconds),
    ("unplaced", "unplaced", str),
    ("rejected", "rejected", str),
    ("makespan", "makespan (s)", _seconds),
    ("decisions_per_second", "decisions/s", lambda v: f"{v:,.0f}"),
)


@dataclass
class Comparison:
    """The runs, as a table (``rows``, ``to_markdown``, shown as HTML in Jupyter) and
    as figures."""

    results: list[Result]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per scheduler: its name and every metric (a tidy table)."""
        return [{"scheduler": r.scheduler, **r.metrics} for r in self.results]

    def to_markdown(self) -> str:
        cells = [[fmt(row[key]) for key, _, fmt in SHOWN] for row in self.rows()]
        lines = [
            "| " + " | ".join(heading for _, heading, _ in SHOWN) + " |",
            "|" + "|".join(":---" if key == "scheduler" else "---:" for key, _, _ in SHOWN) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(heading)}</th>" for _, heading, _ in SHOWN)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(fmt(row[k]))}</td>" for k, _, fmt in SHOWN)
            + "</tr>"
            for row in self.rows()
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        return self.to_markdown()

    def plot_utilisation(self) -> Figure:
        return plots.utilisation(self.results)

    def plot_waits(self) -> Figure:
        return plots.waits(self.results)

    def plot_heatmaps(self) -> Figure:
        return plots.heatmaps(self.results)


def compare(
    schedulers: Iterable[Scheduler | str],
    workload: Workload,
    nodes: NodeTable,
    *,
    failures: Failures | Iterable[Outage] | None = None,
    samples: int = 200,
    progress: bool | None = None,
) -> Comparison:
    """Simulate each scheduler (an object or a name) on the same workload, nodes and
    failures; each run starts from the same empty ``nodes``."""
    outages = failures if isinstance(failures, Failures | None) else list(failures)
    return Comparison(
        [
            simulate(s, workload, nodes, failures=outages, samples=samples, progress=progress)
            for s in schedulers
        ]
    )
