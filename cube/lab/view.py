"""A LocalCluster as widgets and checkers see it, without asking it anything: each
worker's name by address (tasks and nodes name workers by address; people use
``worker-2``), and whether the manager can answer at all (read from the process table,
so a paused manager is never waited on)."""

from __future__ import annotations

from cube.cluster import LocalCluster


class ClusterView:
    """What panels need to know about a LocalCluster without asking it anything: each
    worker's name by address, and whether the manager can answer at all."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def name(self, address: str) -> str:
        for name, component in self.cluster.workers.items():
            if component.address == address:
                return name
        return address

    def manager_down(self) -> str:
        """Why the manager cannot answer now ("" when it can), read from the process
        table: a paused or stopped manager is never waited on."""
        state = self.cluster.manager.state
        if state == "running":
            return ""
        return f"the manager is {state}"

    @property
    def closed(self) -> bool:
        return self.cluster.closed
