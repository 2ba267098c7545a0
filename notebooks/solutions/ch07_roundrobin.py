"""Chapter 7: round-robin: each new task goes to the next node in turn."""

import numpy as np

from cube.lab.exercise import exercise
from cube.scheduler import fits


@exercise("ch07_roundrobin")
class TakeTurns:
    """Round-robin: the first candidate after the node picked last, wrapping around."""

    name = "take-turns"

    def __init__(self):
        self.last = -1  # the index of the node picked last (-1: none yet)

    def select_candidates(self, task, nodes):
        return np.flatnonzero(fits(task, nodes))  # up, and with room for the task

    def score(self, task, nodes, candidates):
        return np.zeros(len(candidates))  # round-robin does not rank nodes

    def pick(self, scores, candidates):
        """The index of the node whose turn it is; remembered in self.last."""
        later = candidates[candidates > self.last]
        self.last = int(later[0] if len(later) else candidates[0])
        return self.last
