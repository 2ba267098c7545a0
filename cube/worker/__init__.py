"""The worker: runs tasks on one machine, as the manager orders.

- ``api.py``: the REST API, behind the fence of the leader's epoch (``epoch.py``);
- ``worker.py``: :class:`Worker`: an order stored as intent, then carried out on the
  runtime (:mod:`cube.runtime`) by its loop, which also inspects the running copies;
- ``copies.py``: starting and stopping a task's copy, as the order it follows says;
- ``inspection.py``: the inspection pass: a copy found gone is recorded Failed;
- ``orders.py``: what an order means (its generation, repeats, stale orders);
- ``adopt.py``: after a restart, adopt what still runs and stop what nobody owns;
- ``retention.py``: when a finished task is forgotten; ``stats.py``: the machine's
  statistics for ``GET /stats``.
"""

from cube.worker.worker import Worker, open_worker

__all__ = ["Worker", "open_worker"]
