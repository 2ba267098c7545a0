"""A replayed run as the lab's timeline picture: where each task's copies ran, worker by
worker, over virtual time, with the nemesis's faults shaded over what they hit. A task
with copies on two machines at once is drawn as "two copies", so a double run stands
out; by default only the tasks that broke a rule are drawn (all, when none did)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cube.lab.timeline import Fault, Timeline
from cube.replay.run import Outcome

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TWICE = "two copies"


def timeline(outcome: Outcome, tasks: set[str] | None = None) -> Timeline:
    """The :class:`~cube.lab.timeline.Timeline` of ``outcome``'s samples."""
    if tasks is None:
        tasks = _broken(outcome) or set(outcome.names.values())
    line = Timeline(title=f"seed {outcome.seed}", origin=0.0)
    for at, copies in outcome.samples:
        seen = []
        for key, machines in copies.items():
            name = outcome.names.get(key, key[:8])
            if name in tasks:
                state = TWICE if len(machines) > 1 else "Running"
                seen += [(machine, name, state) for machine in machines]
        line.observe(seen, at=at)
    last = outcome.samples[-1][0] if outcome.samples else outcome.simulated
    for fault in outcome.faults:
        lane = fault.target if fault.target in outcome.workers else None
        label = f"{fault.kind} {fault.target}".strip()
        end = fault.at + fault.lasts if fault.lasts else fault.at
        line.faults.append(Fault(label, fault.at, min(end, last), lane))
    line.origin = 0.0
    _close(line, last)
    return line


def figure(outcome: Outcome, tasks: set[str] | None = None) -> Figure:
    verdict = "every invariant held" if outcome.ok else outcome.violations[0]
    return timeline(outcome, tasks).figure(f"seed {outcome.seed}: {verdict}")


def _broken(outcome: Outcome) -> set[str]:
    names = set(outcome.names.values())
    return {word for line in outcome.violations for word in line.split() if word in names}


def _close(line: Timeline, at: float) -> None:
    """Close the open spans at ``at`` (virtual time, not the machine's)."""
    line.observe([], at=at)


def png(outcome: Outcome, tasks: set[str] | None = None) -> bytes:
    """The picture as PNG bytes (for a notebook: ``IPython.display.Image(png(...))``)."""
    import io

    buffer = io.BytesIO()
    figure(outcome, tasks).savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()
