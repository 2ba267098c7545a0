"""`cube lab grade`, run as a teacher runs it: real kernels, real checks, real clusters.

Two chapters stand for all fourteen here: 02 (the checker drives a real worker) and 05
(real HTTP in front of a worker). The whole course takes about a minute with the
solutions and again with the stubs, and every chapter is already run both ways, cell by
cell, by nbval and tests/test_exercises.py; what this file tests is the grader itself:
that it reads each check's verdict right, row by row, student by student.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = ("02", "05")


def grade(*args: str, solutions: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CUBE_SOLUTIONS", "CUBE_PROGRESS")}
    env["CUBE_RUNTIME"] = "process"
    if solutions:
        env["CUBE_SOLUTIONS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "cube", "lab", "grade", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def chapters_args() -> list[str]:
    return [arg for chapter in CHAPTERS for arg in ("--chapter", chapter)]


def test_with_the_solutions_every_chapter_passes():
    done = grade(str(NOTEBOOKS), *chapters_args(), solutions=True)
    assert done.returncode == 0, done.stdout + done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:3] == ["CHAPTER", "VERDICT", "TIME"]
    assert [r.split()[:2] for r in rows] == [
        ["02-tasks-and-states", "pass"],
        ["05-worker-api", "pass"],
    ]
    assert all(r.split()[2].endswith("s") for r in rows)


def test_with_the_stubs_no_chapter_passes_and_the_json_says_why():
    done = grade(str(NOTEBOOKS), *chapters_args(), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    rows = result["grades"]
    assert [r["notebook"] for r in rows] == ["02-tasks-and-states", "05-worker-api"]
    for row in rows:
        assert row["verdict"] == "fail" and row["score"] == 0 and row["max_score"] == 1, row
        assert "not written yet" in row["feedback"] and "Hint:" in row["feedback"], row
    assert result["students"] == [{"student_id": "notebooks", "score": 0.0, "max_score": 2.0}]


def test_a_class_gets_one_row_per_student_and_chapter(tmp_path):
    """Two students hand in chapter 02: one wrote the table, one left the stub."""
    stub = nbformat.read(NOTEBOOKS / "02-tasks-and-states.ipynb", as_version=4)
    (tmp_path / "bob").mkdir()
    nbformat.write(stub, tmp_path / "bob" / "02-tasks-and-states.ipynb")
    answer = (NOTEBOOKS / "solutions" / "ch02_transitions.py").read_text()
    for cell in stub.cells:
        if "exercise" in cell.metadata.get("tags", []):
            cell.source = answer
    (tmp_path / "ada").mkdir()
    nbformat.write(stub, tmp_path / "ada" / "02-tasks-and-states.ipynb")

    done = grade(str(tmp_path), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    rows = {r["student_id"]: r for r in json.loads(done.stdout)["grades"]}
    assert rows["ada"]["verdict"] == "pass" and rows["ada"]["score"] == 1, rows["ada"]
    assert rows["bob"]["verdict"] == "fail" and rows["bob"]["score"] == 0, rows["bob"]

    table = grade(str(tmp_path)).stdout.splitlines()
    assert table[0].split()[:4] == ["STUDENT", "CHAPTER", "VERDICT", "TIME"]
    assert sorted(r.split()[:3] for r in table[1:]) == [
        ["ada", "02-tasks-and-states", "pass"],
        ["bob", "02-tasks-and-states", "fail"],
    ]
    assert not (tmp_path / "ada" / ".cube-progress").exists(), "grading wrote into a hand-in"


def test_a_bad_chapter_is_refused_by_name():
    done = grade(str(NOTEBOOKS), "--chapter", "7")
    assert done.returncode == 2 and "--chapter" in done.stderr, done.stderr
