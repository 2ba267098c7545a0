"""Notebook helpers: a local cluster of real processes, widgets that drive it without
holding up the kernel, and the build-it exercises: the learner's pieces
(:mod:`cube.lab.exercise`), their checkers (:mod:`cube.lab.checks`), the nemesis that
breaks things while they run (:mod:`cube.lab.nemesis`), and the verdicts and timeline
pictures that say what happened (:mod:`cube.lab.verdict`, :mod:`cube.lab.timeline`).

``LocalCluster`` is loaded on first use, so that ``cube lab`` (cube/lab/commands.py)
does not slow every other ``cube`` command down."""

from typing import Any

__all__ = ["LocalCluster"]


def __getattr__(name: str) -> Any:
    if name == "LocalCluster":
        from cube.cluster import LocalCluster

        return LocalCluster
    raise AttributeError(f"module 'cube.lab' has no attribute {name!r}")
