"""nbval runs the notebooks with the solutions: each ``@exercise`` cell then uses the
solution of the same name (see :mod:`cube.lab.exercise`), and a check that fails raises,
failing the run. The stub-mode run is tests/test_exercises.py.

The notebooks are stored without outputs (:mod:`cube.lab.clean`); a cell marked
``# NBVAL_CHECK_OUTPUT`` is compared with what ``notebooks/expected/`` says it prints,
handed to nbval here as if it were the cell's stored output."""

import os
import tempfile
from pathlib import Path

import nbformat

from cube.lab.clean import CHECKED, expected_outputs
from cube.lab.scores import PROGRESS_ENV

os.environ["CUBE_SOLUTIONS"] = "1"
# the checks write their verdicts down (cube.lab.scores): not into the repository
_PROGRESS = tempfile.TemporaryDirectory(prefix="cube-progress-")
os.environ.setdefault(PROGRESS_ENV, _PROGRESS.name)


def pytest_unconfigure(config):
    """Removed when the session ends: a test process that ends without running its
    finalizers (as pytest-xdist's workers may) would leave it in /tmp."""
    _PROGRESS.cleanup()


def pytest_collection_modifyitems(items):
    expected: dict[Path, dict] = {}
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or CHECKED not in cell.get("source", ""):
            continue
        path = Path(str(item.parent.fspath))
        if path not in expected:
            expected[path] = expected_outputs(path)
        cell.outputs = [nbformat.from_dict(o) for o in expected[path].get(cell.id, [])]
        cell.execution_count = 1  # nbval compares only cells that were run
