"""Replay any failure: the real manager and workers under a seeded simulation.

FoundationDB and TigerBeetle test their real code inside a simulator in which only the
clock, the network, the disk and the processes are swapped, so that one seed replays one
run exactly. Cube does the same. :mod:`cube.replay.cluster` builds the production
manager and workers in one thread, over a virtual clock (:mod:`cube.clock`), a network
that loses, delays and partitions (:mod:`cube.replay.wires`), disks that outlive a crash
and machines whose processes outlive their worker (:mod:`cube.replay.machine`). The
nemesis (:mod:`cube.replay.nemesis`) is a seeded schedule of crashes, pauses,
partitions and task failures; the invariants (:mod:`cube.replay.check`) are watched all
along and checked once the cluster is quiet. A failing seed is shrunk to the shortest
schedule that still fails, and told as a story and a picture.

    python -m cube.replay --seed 7            # one run, its story on a violation
    python -m cube.replay --seeds 0-499       # a campaign
"""

from cube.replay.run import Outcome, Scenario, run, shrink

__all__ = ["Outcome", "Scenario", "run", "shrink"]
