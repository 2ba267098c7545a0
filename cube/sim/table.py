"""A sweep's results: a tidy table, one row per run, and what it says over the seeds.

Each row holds what was varied (``scheduler``, ``load``, ``cluster``, ``nodes``,
``seed``) and every metric of :mod:`cube.sim.metrics`. :meth:`Sweep.summary` groups the
seeds of each combination and gives the mean with a 95% confidence interval (Student's
t, since there are few seeds): the range that would hold the true mean in 95 of 100
sweeps like this one. Intervals that overlap mean the sweep cannot tell the schedulers
apart on that metric; more seeds narrow them.
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cube.sim.metrics import WALL_CLOCK

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GROUP = ("cluster", "load", "scheduler")
HEADLINE = ("cpu_utilisation", "stranded_cpu", "stranded_memory", "wait_p99", "makespan")
# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
       2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074,
       2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t95(dof: int) -> float:
    """Student's t for a 95% interval with ``dof`` degrees of freedom (past 30, the
    normal 1.96 plus the first correction term, good to 0.1%)."""
    if dof < 1:
        return math.nan
    return T95[dof - 1] if dof <= len(T95) else 1.96 + 2.37 / dof


@dataclass(frozen=True)
class Estimate:
    """The mean of a metric over ``runs`` seeds and its 95% interval ``low..high``."""

    mean: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate:
        seen = [v for v in values if not math.isnan(v)]
        if not seen:
            return cls(math.nan, math.nan, math.nan, 0)
        mean = statistics.fmean(seen)
        if len(seen) < 2:
            return cls(mean, math.nan, math.nan, len(seen))
        half = t95(len(seen) - 1) * statistics.stdev(seen) / math.sqrt(len(seen))
        return cls(mean, mean - half, mean + half, len(seen))

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.mean:.3g}"
        return f"{self.mean:.3g} ± {(self.high - self.low) / 2:.2g}"


@dataclass(eq=False)
class Sweep:
    """The rows of a sweep, in the order of :meth:`cube.sim.sweep.Grid.runs`."""

    rows: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        groups = len({tuple(row[k] for k in GROUP) for row in self.rows})
        return f"Sweep({len(self.rows)} runs, {groups} combinations)"

    def table(self, *, wall_clock: bool = True) -> list[dict[str, Any]]:
        """The rows (copies); without the machine-dependent columns when ``wall_clock``
        is false, which leaves what repeats exactly for the same seeds."""
        return [
            {k: v for k, v in row.items() if wall_clock or k not in WALL_CLOCK} for row in self.rows
        ]

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (pandas is not a dependency of Cube)."""
        try:
            import pandas
        except ImportError:
            raise ImportError("Sweep.to_pandas needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.rows)

    def summary(self, metric: str) -> list[dict[str, Any]]:
        """Per cluster, load and scheduler: ``metric``'s mean over the seeds and its 95%
        interval (``low``, ``high``), in the order the combinations were run."""
        groups: dict[tuple[Any, ...], list[float]] = {}
        for row in self.rows:
            groups.setdefault(tuple(row[k] for k in GROUP), []).append(float(row[metric]))
        out = []
        for key, values in groups.items():
            estimate = Estimate.of(values)
            out.append({**dict(zip(GROUP, key, strict=True)), "metric": metric,
                        "mean": estimate.mean, "low": estimate.low, "high": estimate.high,
                        "runs": estimate.runs})  # fmt: skip
        return out

    def _headline(self) -> tuple[list[str], list[list[str]]]:
        """Each combination with the headline metrics as ``mean ± half-interval``."""
        estimates = {
            metric: {tuple(r[k] for k in GROUP): r for r in self.summary(metric)}
            for metric in HEADLINE
        }
        keys = list(estimates[HEADLINE[0]])
        cells = []
        for key in keys:
            first = estimates[HEADLINE[0]][key]
            row = [str(first["cluster"]), f"{first['load']:g}", str(first["scheduler"])]
            row.append(str(first["runs"]))
            for metric in HEADLINE:
                e = estimates[metric][key]
                row.append(str(Estimate(e["mean"], e["low"], e["high"], e["runs"])))
            cells.append(row)
        return [*GROUP, "runs", *HEADLINE], cells

    def to_markdown(self) -> str:
        """The headline metrics per combination, mean ± half of the 95% interval."""
        head, cells = self._headline()
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])

    def _repr_html_(self) -> str:
        head, cells = self._headline()
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells
        )
        return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        return self.to_markdown()

    def plot(self, metric: str = "wait_p99", ax: Axes | None = None) -> Figure:
        """``metric`` against load, a line per scheduler with its 95% interval as error
        bars, a panel per cluster shape (or into ``ax`` when there is one shape)."""
        from cube.sim.plots import sweep

        return sweep(self.summary(metric), metric, ax)
