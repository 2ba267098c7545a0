"""Simulated machines: a :class:`~cube.node.NodeTable` of empty nodes of chosen sizes.

The simulator uses the very table the schedulers read in the manager, so what is
measured here is what the real code does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cube.node import NodeTable

GIB = 1 << 30


@dataclass(frozen=True)
class NodeSize:
    """One kind of machine: cores, memory and disk (bytes)."""

    name: str
    cores: float
    memory: int
    disk: int


SMALL = NodeSize("small", 4, 16 * GIB, 100 * GIB)
STANDARD = NodeSize("standard", 16, 64 * GIB, 500 * GIB)
LARGE = NodeSize("large", 64, 512 * GIB, 2000 * GIB)
HIGHMEM = NodeSize("highmem", 16, 256 * GIB, 500 * GIB)


def nodes(
    n: int, mix: NodeSize | Mapping[NodeSize, float] = STANDARD, *, seed: int = 0
) -> NodeTable:
    """``n`` empty nodes, all of one size or a mix (``{SMALL: 3, LARGE: 1}``).

    A mix gets exact counts in proportion to the weights, shuffled with ``seed``:
    schedulers break ties by position, so sizes should not sit in blocks."""
    if n < 1:
        raise ValueError(f"a cluster needs at least one node, not {n}")
    if isinstance(mix, NodeSize):
        mix = {mix: 1.0}
    sizes = list(mix)
    weights = np.array([mix[s] for s in sizes], dtype=float)
    if not sizes or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("node mix weights must be non-negative and not all zero")
    counts = _apportion(n, weights / weights.sum())
    kinds = np.repeat(np.arange(len(sizes)), counts)
    np.random.default_rng(seed).shuffle(kinds)
    width = len(str(n - 1))
    return NodeTable.build(
        [f"{sizes[k].name}-{i:0{width}d}" for i, k in enumerate(kinds)],
        cores=[sizes[k].cores for k in kinds],
        memory=[sizes[k].memory for k in kinds],
        disk=[sizes[k].disk for k in kinds],
    )


def _apportion(n: int, shares: np.ndarray) -> np.ndarray:
    """Whole counts summing to ``n`` (largest remainder), so a 3:1 mix of 4 is 3 and 1."""
    exact = shares * n
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts
