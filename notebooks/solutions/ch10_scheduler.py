"""Chapter 10: a packing scheduler: each task goes where it leaves the least room."""

import numpy as np

from cube.lab.exercise import exercise
from cube.scheduler import fits


@exercise("ch10_scheduler")
class Packer:
    """Best fit: the node the task fills most, cores and memory alike."""

    name = "packer"

    def select_candidates(self, task, nodes):
        """The nodes that are up and have room for the task."""
        return np.flatnonzero(fits(task, nodes))

    def score(self, task, nodes, candidates):
        """Lower is better: the share of cores and of memory left free after the task."""
        cores, memory = nodes.cores[candidates], nodes.memory[candidates]
        cpu_left = (cores - nodes.cpu_allocated[candidates] - task.cpu) / cores
        memory_left = (memory - nodes.memory_in_use()[candidates] - task.memory) / memory
        return cpu_left + memory_left

    def pick(self, scores, candidates):
        """The candidate with the lowest score (the first one, on a tie)."""
        return int(candidates[np.argmin(scores)])
