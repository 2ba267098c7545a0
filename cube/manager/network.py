"""How the manager reaches the other side: its workers' APIs and its tasks' health checks.

The manager's decisions never open a socket themselves; they go through a
:class:`Network`. This one is the real thing: HTTP clients, and a thread pool so that
calls to several workers run at once. :mod:`cube.replay` hands the very same manager a
network of its own, whose calls are routed in-process to simulated workers (with delay,
loss and partitions chosen by a seed) and run one after another in one thread. One
implementation of the manager, two drivers.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor

from cube.client import WorkerClient
from cube.manager.health import probe
from cube.manager.probe import Prober


class Network:
    """Real HTTP, real threads."""

    def client(self, api: str, token: str | None, timeout: float) -> WorkerClient:
        """A client for a worker's API (orders, lists, logs)."""
        return WorkerClient(api, token, timeout)

    def prober(self, api: str, token: str | None, timeout: float) -> Prober:
        """The cheap liveness probe of a worker (``/health``, ``/stats``)."""
        return Prober(api, token, timeout)

    def probe_task(self, host: str, port: int, path: str, timeout: float) -> str:
        """A task's own health check: "" when healthy, else what went wrong."""
        return probe(host, port, path, timeout)

    def pool(self, name: str, size: int) -> Executor:
        """Where calls to several workers run at once."""
        return ThreadPoolExecutor(size, thread_name_prefix=name)
