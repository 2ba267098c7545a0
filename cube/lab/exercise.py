"""Build-it exercises: the learner's stubs, and the solutions the tests use instead.

Each chapter notebook has one piece for the learner to write, in a cell marked with
:func:`exercise`::

    @exercise("ch10_scheduler")
    class Packer:
        def score(self, task, nodes, candidates):
            raise NotImplementedError("write this")

In a learner's kernel the decorator hands back the learner's own piece, untouched. The
tests set ``CUBE_SOLUTIONS=1``, and then it hands back the object of the same name from
``notebooks/solutions/ch10_scheduler.py`` instead: that is how every notebook runs
with working answers under nbval, and with the stubs in the stub-mode test, without
two copies of any notebook. A stuck learner can load a solution into a cell with
``%load solutions/ch10_scheduler.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")

SOLUTIONS_ENV = "CUBE_SOLUTIONS"


def solutions_mode() -> bool:
    """Are the notebooks running with the solutions (as the tests run them)?"""
    return os.environ.get(SOLUTIONS_ENV) == "1"


def solutions_dir() -> Path:
    """``notebooks/solutions``: beside the notebook being run, or in the source tree."""
    here = Path.cwd() / "solutions"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "notebooks" / "solutions"


def solution(module: str) -> ModuleType:
    """The solution module ``module`` (for example ``"ch10_scheduler"``), loaded from
    its file (once)."""
    name = f"cube_solutions.{module}"
    if name in sys.modules:
        return sys.modules[name]
    path = solutions_dir() / f"{module}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.exists():
        raise FileNotFoundError(f"no solution {module!r} at {path}")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def exercise(module: str) -> Callable[[T], T]:
    """Mark a learner's piece as the exercise whose solution is ``module``.

    Returns the piece itself, or in solutions mode the solution's object with the same
    ``__name__``."""

    def mark(piece: T) -> T:
        inside_solution = getattr(_function(piece), "__module__", "") == f"cube_solutions.{module}"
        if solutions_mode() and not inside_solution:
            piece = getattr(solution(module), _name(piece))
        _tag(piece, module)
        return piece

    return mark


def _function(piece: Any) -> Any:
    """The piece itself, or for a click command the function it runs."""
    callback = getattr(piece, "callback", None)
    return callback if callable(callback) and not isinstance(piece, type) else piece


def _name(piece: Any) -> str:
    return _function(piece).__name__


def _tag(piece: Any, module: str) -> None:
    with contextlib.suppress(AttributeError, TypeError):  # some objects take no attributes
        piece.__cube_exercise__ = module


def not_written(error: BaseException) -> bool:
    """Did the learner's piece stop at its stub?"""
    return isinstance(error, NotImplementedError)
