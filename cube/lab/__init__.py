"""Notebook helpers: a local cluster of real processes, and widgets that drive it."""

from cube.cluster import LocalCluster

__all__ = ["LocalCluster"]
