"""Notebooks are stored clean: no outputs, no execution counts, no widget state.

A learner who opens a chapter should meet the cells as written, not the answers of
somebody else's run: a stored "✓ Passed" under an unwritten stub, or a widget's repr
where the widget would be, teaches the wrong thing. So the repository keeps none.

The few cells whose output the tests compare (marked ``# NBVAL_CHECK_OUTPUT``) keep
what they are expected to print beside the notebook, in
``notebooks/expected/NN-title.json`` (cell id -> outputs), and ``notebooks/conftest.py``
hands it to nbval. :func:`strip` moves the outputs of those cells there and drops the
rest, so saving a notebook from Jupyter and stripping it refreshes the expectations::

    python -m cube.lab.clean notebooks/*.ipynb      # strip in place
    python -m cube.lab.clean --check notebooks/*.ipynb   # say what is left, exit 1
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat

CHECKED = "# NBVAL_CHECK_OUTPUT"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: cell metadata that a run or a viewer leaves behind (the tags are the author's)
RUN_METADATA = ("execution", "collapsed", "scrolled", "jupyter", "ExecuteTime")


def expected_path(notebook: Path) -> Path:
    """Where the expected outputs of ``notebook``'s checked cells are kept."""
    return notebook.parent / "expected" / f"{notebook.stem}.json"


def leftovers(notebook: nbformat.NotebookNode) -> list[str]:
    """What a run left in ``notebook``, one line each (empty when it is clean)."""
    found = []
    if "widgets" in notebook.metadata:
        found.append("notebook metadata: widget state")
    for number, cell in enumerate(notebook.cells):
        where = f"cell {number} ({cell.get('id', '?')})"
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"{where}: {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"{where}: execution count {cell.execution_count}")
        found += [f"{where}: metadata {key!r}" for key in RUN_METADATA if key in cell.metadata]
    return found


def strip(notebook: nbformat.NotebookNode) -> dict[str, list[dict[str, Any]]]:
    """Clear ``notebook`` in place; answer the outputs of its checked cells by cell id
    (only those that had any: a cell never run keeps its old expectation)."""
    notebook.metadata.pop("widgets", None)
    expected = {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if CHECKED in cell.source and cell.outputs:
            expected[cell.id] = [_plain(output) for output in cell.outputs]
        cell.outputs = []
        cell.execution_count = None
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
    return expected


def expected_outputs(notebook: Path) -> dict[str, list[dict[str, Any]]]:
    """The stored expectations of ``notebook``'s checked cells (none when absent)."""
    path = expected_path(notebook)
    return json.loads(path.read_text()) if path.exists() else {}


def strip_file(path: Path) -> None:
    """Strip the notebook at ``path`` in place, merging its checked outputs into its
    expectations, and dropping expectations of cells that are no longer checked."""
    notebook = nbformat.read(path, as_version=4)
    checked = {c.id for c in notebook.cells if c.cell_type == "code" and CHECKED in c.source}
    expected = {k: v for k, v in expected_outputs(path).items() if k in checked}
    expected.update(strip(notebook))
    nbformat.write(notebook, path)
    target = expected_path(path)
    if expected:
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(expected, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    elif target.exists():
        target.unlink()


def _plain(output: nbformat.NotebookNode) -> dict[str, Any]:
    """An output as stored JSON, without the run's execution count."""
    plain = json.loads(json.dumps(output))
    if "execution_count" in plain:
        plain["execution_count"] = None
    plain.get("data", {}).pop(WIDGET_STATE, None)
    return plain


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"]
    dirty = 0
    for path in paths:
        if check:
            found = leftovers(nbformat.read(path, as_version=4))
            dirty += bool(found)
            for line in found:
                print(f"{path}: {line}")
        else:
            strip_file(path)
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
