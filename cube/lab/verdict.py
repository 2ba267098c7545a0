"""A checker's answer: passed or not, what went wrong, a hint, and the timeline.

In Jupyter a :class:`Verdict` shows as a coloured box with the problems, a first hint
and the picture; as text it reads the same without the picture.

Hints unfold: the first is a nudge, each "Show another hint" gives the next, and the
last one is the answer, so a learner takes only as much help as they need. In HTML the
unfolding is nested ``<details>`` elements: one output (the verdict's JSON stays with
it), no widget state, and it still works where no kernel answers (a saved notebook, a
grader's HTML export). As text only the first hint is shown, with how many remain.

A verdict also carries a small JSON document (``application/vnd.cube.verdict+json``)
so tests can read the outcome of a notebook's check cell without parsing prose.

When the notebooks run with the solutions (``CUBE_SOLUTIONS=1``, as under nbval), a
failed verdict raises :class:`CheckFailed`, so a solution that stops passing fails the
test run; a learner's kernel never raises: the verdict is the answer.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cube.lab import scores
from cube.lab.exercise import solutions_mode

if TYPE_CHECKING:
    from cube.lab.timeline import Timeline

MIME = "application/vnd.cube.verdict+json"


class CheckFailed(AssertionError):
    """A check failed while the notebooks run with their solutions."""


@dataclass
class Verdict:
    exercise: str
    passed: bool
    summary: str
    problems: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # a nudge first, the answer last
    notes: list[str] = field(default_factory=list)
    png: bytes = b""
    environment: bool = False  # not checked: the cluster was not ready (not the code's fault)

    @property
    def hint(self) -> str:
        """The first hint: the nudge."""
        return self.hints[0] if self.hints else ""

    def more_hints(self) -> list[str]:
        """The hints after the first, the answer last (for a reader without HTML)."""
        return self.hints[1:]

    def attach(self, timeline: Timeline | None, title: str = "") -> Verdict:
        """Draw ``timeline`` into the verdict (as a PNG, so the figure is not kept)."""
        if timeline is not None and (timeline.spans or timeline._open or timeline.faults):
            self.draw(timeline.figure(title))
        return self

    def draw(self, figure: Any) -> Verdict:
        """Keep a matplotlib figure as the verdict's picture."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        self.png = buffer.getvalue()
        return self

    def settle(self) -> Verdict:
        """Write this down as the exercise's last attempt (:mod:`cube.lab.scores`), and
        raise :class:`CheckFailed` if it failed while running with the solutions."""
        scores.record(self)
        if solutions_mode() and not self.passed:
            raise CheckFailed(str(self))
        return self

    # ----------------------------------------------------------------- showing it

    def __str__(self) -> str:
        mark = "✓" if self.passed else "!" if self.environment else "✗"
        head = f"{mark} {self.exercise}: {self.summary}"
        lines = [head, *(f"  - {p}" for p in self.problems)]
        lines += [f"  {n}" for n in self.notes]
        if self.hint and not self.passed:
            lines.append(f"  Hint: {self.hint}")
            if more := len(self.hints) - 1:
                lines.append(
                    f"  ({more} more hint{'s' * (more > 1)}, the last one the answer: "
                    "verdict.more_hints())"
                )
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_mimebundle_(self, **_: Any) -> dict[str, Any]:
        return {"text/plain": str(self), "text/html": self._html(), MIME: self.to_json()}

    def to_json(self) -> dict[str, Any]:
        return {
            "exercise": self.exercise,
            "passed": self.passed,
            "summary": self.summary,
            "problems": self.problems,
            "hint": self.hint,
            "hints": self.hints,
            "picture": bool(self.png),
            "environment": self.environment,
        }

    def _html(self) -> str:
        colour, mark = ("#166534", "✓ Passed") if self.passed else ("#b91c1c", "✗ Not yet")
        if self.environment:
            colour, mark = ("#b45309", "⚠ Not checked")
        parts = [
            f'<div style="border:2px solid {colour};border-radius:6px;padding:6px 10px">',
            f'<b style="color:{colour}">{mark}</b> · {html.escape(self.exercise)}: '
            f"{html.escape(self.summary)}",
        ]
        if self.problems:
            items = "".join(f"<li>{html.escape(p)}</li>" for p in self.problems)
            parts.append(f"<ul>{items}</ul>")
        parts += [f"<div>{html.escape(n)}</div>" for n in self.notes]
        if self.hint and not self.passed:
            parts.append(_unfolding(self.hints))
        if self.png:
            data = base64.b64encode(self.png).decode()
            parts.append(f'<img class="cube-timeline" src="data:image/png;base64,{data}"/>')
        parts.append("</div>")
        return "".join(parts)


SUMMARY = (
    '<summary style="cursor:pointer;display:inline-block;margin:4px 0;padding:1px 8px;'
    'border:1px solid #9ca3af;border-radius:4px;background:#f3f4f6">{}</summary>'
)


def _unfolding(hints: list[str]) -> str:
    """The first hint, then each next one behind a "Show another hint" button (the
    last behind "Show the answer"), nested so that they open one at a time."""
    inner = ""
    for n in range(len(hints) - 1, 0, -1):
        label = "Show the answer" if n == len(hints) - 1 and n > 1 else "Show another hint"
        inner = (
            f'<details class="cube-hint">{SUMMARY.format(label)}'
            f"<div><i>{html.escape(hints[n])}</i></div>{inner}</details>"
        )
    return f"<div><i>Hint: {html.escape(hints[0])}</i></div>{inner}"
