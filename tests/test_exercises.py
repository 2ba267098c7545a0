"""The build-it exercises, run with the learner's stubs: every checker must fail, and say
why in a verdict, rather than crash or pass.

nbval runs every notebook with the solutions (``CUBE_SOLUTIONS=1``, set by
``notebooks/conftest.py``), where a failing check raises. This is the other half: for
each notebook with a cell tagged ``exercise``, a fresh kernel runs the cells tagged
``setup``, ``exercise``, ``check`` and ``cleanup``, in order, with the stubs as
written, and each check cell must show a failed verdict. So a check that cannot fail
fails here, and a new exercise is under both runs as soon as its cells are tagged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from cube.lab.verdict import MIME

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
CHAPTERS = sorted(NOTEBOOKS.glob("[01][0-9]-*.ipynb"))
STEPS = ("setup", "exercise", "check", "cleanup")


def _tags(cell: nbformat.NotebookNode) -> set[str]:
    return set(cell.metadata.get("tags", []))


def _with_exercise() -> list[Path]:
    return [p for p in CHAPTERS if any("exercise" in _tags(c) for c in _read(p).cells)]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("path", CHAPTERS[1:], ids=lambda p: p.name[:2])
def test_every_chapter_has_an_exercise_with_a_solution(path):
    cells = _read(path).cells
    exercises = [c for c in cells if "exercise" in _tags(c)]
    checks = [c for c in cells if "check" in _tags(c)]
    assert exercises and checks, f"{path.name} has no cells tagged exercise and check"
    for cell in exercises:
        assert "NotImplementedError" in cell.source, "an exercise cell holds a stub"
        for module in re.findall(r'@exercise\("(\w+)"\)', cell.source):
            assert (NOTEBOOKS / "solutions" / f"{module}.py").exists(), module


@pytest.mark.parametrize("path", _with_exercise(), ids=lambda p: p.name[:2])
def test_the_stubs_fail_with_a_verdict(path, monkeypatch, tmp_path):
    monkeypatch.delenv("CUBE_SOLUTIONS", raising=False)
    monkeypatch.setenv("CUBE_RUNTIME", "process")
    notebook = _read(path)
    notebook.cells = [c for c in notebook.cells if c.cell_type == "code" and _tags(c) & set(STEPS)]
    # the kernel talks over Unix sockets, not TCP ports: a port chosen free can be
    # taken by another test's connection before the kernel binds it
    kernel = KernelManager(
        kernel_name="python3",
        transport="ipc",
        ip=str(tmp_path / "kernel"),
        connection_file=str(tmp_path / "kernel.json"),  # not a file of its own in /tmp, left
    )
    client = NotebookClient(
        notebook,
        km=kernel,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError if any cell raised
    verdicts = [
        output["data"][MIME]
        for cell in notebook.cells
        if "check" in _tags(cell)
        for output in cell.outputs
        if MIME in output.get("data", {})
    ]
    assert verdicts, "no verdict was shown"
    for verdict in verdicts:
        verdict = json.loads(verdict) if isinstance(verdict, str) else verdict
        assert verdict["passed"] is False, f"a stub passed: {verdict}"
        assert verdict["problems"] and verdict["summary"], verdict
