"""A learner's progress: each check's last verdict is written down as it is given, and
notebook 00 shows them, chapter by chapter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cube.lab.scores import PROGRESS_ENV, attempts, progress
from cube.lab.verdict import Verdict

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


@pytest.fixture
def mine(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBE_SOLUTIONS", raising=False)
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "progress"))
    for notebook in ("00-index.ipynb", "02-tasks-and-states.ipynb", "07-the-manager.ipynb"):
        shutil.copy(NOTEBOOKS / notebook, tmp_path)
    return tmp_path


def test_every_verdict_given_is_written_down_and_the_last_one_counts(mine):
    Verdict("07 · take turns", False, "not written yet", ["a stub"]).settle()
    assert attempts()["07"].passed is False
    Verdict("07 · take turns", True, "your scheduler takes turns").settle()
    Verdict("02 · the state machine", False, "1 problem", ["Completed may go on"]).settle()
    shown = progress(mine)
    assert shown.passed == ["07"]
    text = str(shown)
    assert text.splitlines()[0] == "1 of 3 exercises pass"
    assert "00-index: not checked yet" in text
    assert "02-tasks-and-states: not yet (1 problem)" in text
    assert "07-the-manager: passes (your scheduler takes turns)" in text
    assert '<a href="07-the-manager.ipynb">' in shown._repr_html_()


def test_a_folder_that_cannot_be_written_keeps_no_progress_and_breaks_no_check(mine, monkeypatch):
    (mine / "file").write_text("")
    monkeypatch.setenv(PROGRESS_ENV, str(mine / "file" / "progress"))
    assert Verdict("07 · take turns", True, "fine").settle().passed
    assert attempts() == {}
