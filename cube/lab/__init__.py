"""Notebook helpers: a local cluster of real processes, widgets that drive it without
holding up the kernel, and the build-it exercises: the learner's pieces
(:mod:`cube.lab.exercise`), their checkers (:mod:`cube.lab.checks`), the nemesis that
breaks things while they run (:mod:`cube.lab.nemesis`), and the verdicts and timeline
pictures that say what happened (:mod:`cube.lab.verdict`, :mod:`cube.lab.timeline`)."""

from cube.cluster import LocalCluster

__all__ = ["LocalCluster"]
