"""Grading a class: every chapter's check, run headless over learners' notebooks.

For each chapter notebook with a check, a fresh kernel runs the cells the authors
tagged ``setup``, ``exercise``, ``check`` and ``cleanup``, in order, as the learner left
them (the test of the stubs runs them the same way). Only those: a learner's scratch
cells elsewhere may be half-written, and must not decide the grade. The verdict is read
from the check cell's output (the JSON every verdict carries), so the grade is exactly
what the learner saw. A check cell that raised, or showed no verdict, is an error, not a
fail: the check could not judge.

A folder of notebooks is one learner; a folder whose sub-folders hold notebooks is a
class, one learner per sub-folder. The JSON form follows nbgrader's gradebook export (a
row per student and notebook, with ``score`` and ``max_score``) plus the verdict's own
words as feedback, so it can be read by what reads nbgrader's.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from cube.lab.scores import PROGRESS_ENV
from cube.lab.verdict import MIME

STEPS = ("setup", "exercise", "check", "cleanup")
ASSIGNMENT = "cube-lab"


@dataclass(frozen=True)
class Grade:
    """One learner's result on one chapter."""

    student: str
    notebook: str  # "07-the-manager"
    verdict: str  # "pass", "fail" or "error"
    seconds: float
    summary: str
    problems: tuple[str, ...] = ()
    hint: str = ""

    @property
    def chapter(self) -> str:
        return self.notebook[:2]

    def to_gradebook(self) -> dict[str, Any]:
        """A row as nbgrader's gradebook export has them, with the verdict's words."""
        feedback = [self.summary, *(f"- {p}" for p in self.problems)]
        if self.hint and self.verdict != "pass":
            feedback.append(f"Hint: {self.hint}")
        return {
            "assignment": ASSIGNMENT,
            "student_id": self.student,
            "notebook": self.notebook,
            "score": 1.0 if self.verdict == "pass" else 0.0,
            "max_score": 1.0,
            "verdict": self.verdict,
            "seconds": round(self.seconds, 1),
            "feedback": "\n".join(feedback),
        }


def learners(root: Path) -> Iterator[tuple[str, Path]]:
    """(student, folder) for ``root``: itself when it holds chapter notebooks, else each
    sub-folder that does (a class handed in, one folder per student)."""
    if root.is_file():
        yield root.parent.name or ".", root
        return
    if _chapters(root):
        yield root.name or ".", root
        return
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and _chapters(p)):
        yield sub.name, sub


def _chapters(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("[0-9][0-9]-*.ipynb")) if _checked(p)]


def _checked(path: Path) -> bool:
    return any("check" in _tags(c) for c in nbformat.read(path, as_version=4).cells)


def _tags(cell: nbformat.NotebookNode) -> set[str]:
    return set(cell.metadata.get("tags", []))


def grade_notebook(path: Path, student: str = ".", timeout: float = 300) -> Grade:
    """Run ``path``'s tagged cells in a fresh kernel and read its check's verdict."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [c for c in notebook.cells if c.cell_type == "code" and _tags(c) & set(STEPS)]
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cube-grade-") as scratch:
        # Unix sockets, not TCP ports: a port chosen free can be taken before the kernel binds
        # and its connection file in the scratch folder too, removed with it
        kernel = KernelManager(
            kernel_name="python3",
            transport="ipc",
            ip=f"{scratch}/kernel",
            connection_file=f"{scratch}/kernel.json",
        )
        client = NotebookClient(
            notebook,
            km=kernel,
            timeout=int(timeout),
            kernel_name="python3",
            allow_errors=True,  # the clean-up runs even when the check raised
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            # the checks write the learner's progress down: not into a hand-in
            client.execute(env={**os.environ, PROGRESS_ENV: f"{scratch}/progress"})
        except Exception as exc:  # a kernel that died or a cell that timed out
            return Grade(student, path.stem, "error", time.monotonic() - began, _oneline(exc))
        finally:  # nbclient leaves a kernel it was handed running
            if kernel.has_kernel:
                kernel.shutdown_kernel(now=True)
    return _read_verdict(notebook, student, path.stem, time.monotonic() - began)


def _read_verdict(
    notebook: nbformat.NotebookNode, student: str, name: str, seconds: float
) -> Grade:
    """The grade the check cells' outputs say: their verdicts, else their error."""
    checks = [c for c in notebook.cells if "check" in _tags(c)]
    data = [o["data"][MIME] for c in checks for o in c.outputs if MIME in o.get("data", {})]
    verdicts = [_json(v) for v in data]
    if verdicts:
        failed = [v for v in verdicts if not v["passed"]]
        told = failed[0] if failed else verdicts[-1]
        word = "fail" if failed else "pass"
        problems = tuple(told.get("problems", []))
        hint = told.get("hint", "")
        return Grade(student, name, word, seconds, told["summary"], problems, hint)
    errors = [o for c in notebook.cells for o in c.outputs if o.get("output_type") == "error"]
    why = "the check showed no verdict"
    if errors:
        why = f"{errors[0]['ename']}: {errors[0]['evalue']}"
    return Grade(student, name, "error", seconds, _oneline(why))


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value)


def _oneline(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0][:200] if lines else type(text).__name__


def grade(
    roots: list[Path], chapters: set[str] | None = None, timeout: float = 300
) -> Iterator[Grade]:
    """Grade every learner under ``roots``, chapter by chapter (only ``chapters``, as
    two-digit numbers, when given), yielding each grade as soon as it is known."""
    for root in roots:
        for student, where in learners(root):
            paths = [where] if where.is_file() else _chapters(where)
            for path in paths:
                if chapters is None or path.name[:2] in chapters:
                    yield grade_notebook(path, student, timeout)


def table(grades: list[Grade]) -> list[list[str]]:
    """Rows for people: student (when more than one), chapter, verdict, time, summary."""
    several = len({g.student for g in grades}) > 1
    rows = []
    for g in grades:
        row = [g.notebook, g.verdict, f"{g.seconds:.1f}s", g.summary]
        rows.append([g.student, *row] if several else row)
    return rows


def headers(grades: list[Grade]) -> list[str]:
    base = ["CHAPTER", "VERDICT", "TIME", "SUMMARY"]
    return ["STUDENT", *base] if len({g.student for g in grades}) > 1 else base


def as_json(grades: list[Grade]) -> dict[str, Any]:
    """The whole grading: nbgrader-style rows, and each student's total."""
    totals: dict[str, dict[str, float]] = {}
    for g in grades:
        total = totals.setdefault(g.student, {"score": 0.0, "max_score": 0.0})
        total["score"] += 1.0 if g.verdict == "pass" else 0.0
        total["max_score"] += 1.0
    return {
        "assignment": ASSIGNMENT,
        "grades": [g.to_gradebook() for g in grades],
        "students": [{"student_id": s, **t} for s, t in totals.items()],
    }
