"""The notebooks are stored as a learner should first see them: no outputs, no execution
counts, no widget state (a stored "✓ Passed" under an unwritten stub teaches the wrong
thing). The outputs the tests compare live in notebooks/expected/, one entry per cell
marked to be checked, and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from cube.lab.clean import CHECKED, WIDGET_STATE, expected_outputs, leftovers, strip

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]-*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_a_stored_notebook_holds_no_output_count_or_widget_state(path):
    assert leftovers(nbformat.read(path, as_version=4)) == [], (
        f"{path.name} was saved after a run: `python -m cube.lab.clean {path}` strips it"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_checked_cell_has_an_expected_output_and_nothing_else_does(path):
    checked = {
        c.id
        for c in nbformat.read(path, as_version=4).cells
        if c.cell_type == "code" and CHECKED in c.source
    }
    expected = expected_outputs(path)
    assert set(expected) == checked
    assert WIDGET_STATE not in json.dumps(expected)


def test_strip_finds_and_removes_what_a_run_leaves():
    notebook = nbformat.v4.new_notebook()
    checked = nbformat.v4.new_code_cell(f"{CHECKED}\nprint(1)", execution_count=3)
    checked.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    widget = nbformat.v4.new_code_cell("board", execution_count=4)
    widget.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "Dashboard(...)"})]
    widget.metadata["scrolled"] = True
    notebook.cells = [checked, widget]
    notebook.metadata["widgets"] = {WIDGET_STATE: {"state": {}}}
    assert len(leftovers(notebook)) == 6
    printed = {"name": "stdout", "output_type": "stream", "text": "1\n"}
    assert strip(notebook) == {checked.id: [printed]}
    assert leftovers(notebook) == []
