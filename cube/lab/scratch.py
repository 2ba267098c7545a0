"""Scratch folders that cannot outlive the kernel that made them.

A notebook that runs a runtime or a worker in its own kernel keeps their state, and the
task processes they start, under a temporary folder. :func:`scratch_dir` makes one and
puts a :class:`~cube.reaper.Reaper` on it: if the kernel is shut down, restarted or
killed before the clean-up cell runs, the reaper stops every process that names the
folder and removes it. :func:`remove_scratch` is the clean-up cell's half.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from cube.reaper import Reaper

_reapers: dict[Path, Reaper] = {}


def scratch_dir(prefix: str = "cube-") -> Path:
    """A new temporary folder, removed (with whatever runs from it) when the kernel
    ends, whether or not :func:`remove_scratch` is called."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _reapers[path] = Reaper(path, remove=True)
    return path


def remove_scratch(path: str | Path) -> None:
    """Remove a scratch folder now, and let its reaper go."""
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    reaper = _reapers.pop(path, None)
    if reaper is not None:
        reaper.done()
