"""Chapter 14: who leads? The live candidate whose key etcd created first."""

from cube.lab.exercise import exercise


@exercise("ch14_leader")
def who_leads(candidates):
    """The name of the candidate that leads, or None when nobody can."""
    alive = [c for c in candidates if c.alive]  # a lease gone: its key is on its way out
    if not alive:
        return None
    return min(alive, key=lambda c: c.revision).name  # first in line: the oldest key
