"""Timelines: what each task was doing, on which worker, second by second, and the
faults a nemesis injected, as a picture a learner can read a bug from.

A :class:`Timeline` is fed observations, ``(lane, row, state)`` triples (lane: the
worker; row: the task; state: its state's name), by whoever watches the system (see
:mod:`cube.lab.watch`); it keeps one span per stretch of unchanged state. Faults are
spans too (a paused worker, a killed manager) or instants (a crashed task). The
picture (:meth:`Timeline.figure`) has a band per worker, a bar per task in it coloured
by state, faults shaded over what they hit, and instants marked with a cross.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLOURS = {
    "Pending": "#9ca3af",
    "Scheduled": "#60a5fa",
    "Running": "#16a34a",
    "Completed": "#374151",
    "Failed": "#dc2626",
    "cut short": "#f87171",  # a simulated run ended by its node's failure
    "leading": "#15803d",  # one of several managers: the one that acts
    "waiting": "#93c5fd",  # ...and the others, in line behind it
    "two copies": "#7f1d1d",  # a replayed run: one task running in two places at once
}
OTHER = "#a78bfa"
FAULT = "#f59e0b"
UNPLACED = "(no worker)"


@dataclass
class Span:
    lane: str
    row: str
    state: str
    start: float
    end: float


@dataclass
class Fault:
    """A fault from ``start`` to ``end`` (``None`` while it lasts) on ``lane`` (a worker;
    ``None``: the whole cluster, as when the manager is down). ``row`` marks an instant
    fault on one task."""

    label: str
    start: float
    end: float | None = None
    lane: str | None = None
    row: str | None = None


@dataclass
class Timeline:
    """Observations and faults, in seconds since the timeline was made."""

    title: str = ""
    origin: float = field(default_factory=time.monotonic)
    row_labels: bool = True  # False where rows are only slots (a simulation's)
    spans: list[Span] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _open: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)

    def now(self) -> float:
        return time.monotonic() - self.origin

    def observe(self, seen: Iterable[tuple[str, str, str]], at: float | None = None) -> None:
        """Record what is true now: each ``(lane, row, state)``. A row no longer seen on
        a lane (a task that moved) ends its span there."""
        at = self.now() if at is None else at
        current = {(lane, row): state for lane, row, state in seen}
        for key, (state, start) in list(self._open.items()):
            if current.get(key) != state:
                self._close(key, state, start, at)
        for key, state in current.items():
            if key not in self._open:
                self._open[key] = (state, at)

    def fault(
        self, label: str, lane: str | None = None, row: str | None = None, instant: bool = False
    ) -> Fault:
        """Start a fault now (``instant``: one that is over at once, like a crash)."""
        at = self.now()
        fault = Fault(label, at, at if instant else None, lane, row)
        self.faults.append(fault)
        return fault

    def end(self, fault: Fault) -> None:
        fault.end = self.now()

    def finish(self) -> Timeline:
        """Close every open span (and fault) at the current time."""
        at = self.now()
        for key, (state, start) in list(self._open.items()):
            self._close(key, state, start, at)
        for fault in self.faults:
            if fault.end is None:
                fault.end = at
        return self

    def states(self, row: str) -> list[str]:
        """The states ``row`` went through, in order, without repeats."""
        out: list[str] = []
        for span in sorted((s for s in self.spans if s.row == row), key=lambda s: s.start):
            if not out or out[-1] != span.state:
                out.append(span.state)
        return out

    def _close(self, key: tuple[str, str], state: str, start: float, end: float) -> None:
        del self._open[key]
        self.spans.append(Span(key[0], key[1], state, start, max(end, start + 0.01)))

    # ------------------------------------------------------------------ the picture

    def figure(self, title: str = "") -> Figure:
        """The timeline drawn with matplotlib (a Figure outside pyplot, so it is shown
        only where it is asked for)."""
        from matplotlib.figure import Figure

        self.finish()
        rows = self._layout()
        height = 1.2 + 0.32 * max(len(rows), 1)
        figure = Figure(figsize=(9, min(height, 9)), layout="constrained")
        ax = figure.add_subplot()
        y = {key: i for i, key in enumerate(rows)}
        for span in self.spans:
            colour = COLOURS.get(span.state, OTHER)
            ax.broken_barh(
                [(span.start, span.end - span.start)],
                (y[(span.lane, span.row)] - 0.38, 0.76),
                color=colour,
            )
        ax.set_xlabel("seconds")
        ends = [s.end for s in self.spans] + [f.end for f in self.faults if f.end is not None]
        ax.set_xlim(0, max(ends, default=1.0) * 1.02 + 0.05)
        names = self._label(ax, rows, figure)
        self._draw_faults(ax, rows, y, names)
        ax.set_title(title or self.title, fontsize=10, loc="left")
        self._legend(ax)
        return figure

    def _layout(self) -> list[tuple[str, str]]:
        """Rows grouped by lane (workers in name order, "no worker" last), each lane's
        rows in order of first appearance."""
        first: dict[tuple[str, str], float] = {}
        for span in sorted(self.spans, key=lambda s: s.start):
            first.setdefault((span.lane, span.row), span.start)
        for fault in self.faults:
            if fault.lane is not None and fault.row is not None:
                first.setdefault((fault.lane, fault.row), fault.start)
        lanes = sorted({lane for lane, _ in first}, key=lambda lane: (lane == UNPLACED, lane))
        return [key for lane in lanes for key in sorted(first, key=first.get) if key[0] == lane]

    def _draw_faults(
        self,
        ax: Axes,
        rows: list[tuple[str, str]],
        y: dict[tuple[str, str], int],
        names: dict[tuple[str, str], tuple[float, float]],
    ) -> None:
        for fault in self.faults:
            end = fault.end if fault.end is not None else self.now()
            key = (fault.lane, fault.row)
            if fault.row is not None and key in y:
                ax.plot(fault.start, y[key], "x", color="black", ms=9, mew=2, zorder=4)
                # the label goes after the task's name when the crash is close to its
                # start, so that neither hides the other
                name_start, name_end = names.get(key, (0.0, 0.0))  # type: ignore[arg-type]
                near = name_start - 0.001 <= fault.start <= name_end
                ax.annotate(
                    fault.label,
                    (fault.start, y[key]),
                    xytext=(name_end, y[key]) if near else (4, 6),
                    textcoords="data" if near else "offset points",
                    va="center" if near else "baseline",
                    fontsize=7,
                    fontweight="bold",
                    color="#7f1d1d",
                    zorder=5,
                    bbox={"facecolor": "white", "alpha": 0.8, "pad": 0.5, "linewidth": 0},
                )
                continue
            hit = [y[k] for k in rows if fault.lane is None or k[0] == fault.lane]
            low, high = (min(hit) - 0.5, max(hit) + 0.5) if hit else (-0.5, len(rows) - 0.5)
            ax.fill_between(
                [fault.start, max(end, fault.start + 0.05)],
                low,
                high,
                color=FAULT,
                alpha=0.25,
                hatch="//",
                linewidth=0,
            )
            ax.annotate(
                fault.label,
                (fault.start, low),
                xytext=(2, 2),
                textcoords="offset points",
                fontsize=7,
                color="#92400e",
            )

    def _label(
        self, ax: Axes, rows: list[tuple[str, str]], figure: Figure
    ) -> dict[tuple[str, str], tuple[float, float]]:
        """Workers on the y axis, one per band; each task's name at the start of its
        first bar. Returns where each name runs, from and to, in seconds (roughly: the
        plot's width is taken as 80 % of the figure's)."""
        ax.set_ylim(len(rows) - 0.5, -0.5)
        bands: dict[str, list[int]] = {}
        for i, (lane, _) in enumerate(rows):
            bands.setdefault(lane, []).append(i)
        ax.set_yticks([sum(b) / len(b) for b in bands.values()], list(bands), fontsize=8)
        for i in [b[0] for b in bands.values()][1:]:
            ax.axhline(i - 0.5, color="#6b7280", linewidth=1)
        starts: dict[tuple[str, str], float] = {}
        for span in self.spans:
            key = (span.lane, span.row)
            starts[key] = min(starts.get(key, span.start), span.start)
        for fault in self.faults:
            if fault.row is not None:
                starts.setdefault((fault.lane or "", fault.row), fault.start)
        low, high = ax.get_xlim()
        per_point = (high - low) / (figure.get_figwidth() * 72 * 0.8)
        names: dict[tuple[str, str], tuple[float, float]] = {}
        crashes = {(f.lane, f.row): f.start for f in self.faults if f.row is not None}
        for i, key in enumerate(rows if self.row_labels else []):
            box = {"facecolor": "white", "alpha": 0.7, "pad": 0.5, "linewidth": 0}
            start = starts.get(key, 0.0)
            width = (len(key[1]) + 2) * 7 * 0.62 * per_point
            crash = crashes.get(key)
            if crash is not None and start <= crash <= start + width and start - width >= low:
                # a crash soon after the start: the name goes before the bar, clear of it
                ax.text(start, i, f"{key[1]} ", va="center", ha="right", fontsize=7, bbox=box)
                names[key] = (start - width, start)
                continue
            ax.text(start, i, f" {key[1]}", va="center", fontsize=7, bbox=box)
            names[key] = (start, start + width)
        return names

    def _legend(self, ax: Axes) -> None:
        from matplotlib.patches import Patch

        seen = list(dict.fromkeys(s.state for s in self.spans))
        handles = [Patch(color=COLOURS.get(s, OTHER), label=s) for s in seen]
        if any(f.row is None for f in self.faults):
            handles.append(Patch(color=FAULT, alpha=0.4, label="fault"))
        if handles:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
