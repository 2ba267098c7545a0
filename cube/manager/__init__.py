"""The manager: accepts tasks, decides where they run, and keeps them running.

The path of a task, in the order it takes them (docs/ARCHITECTURE.md traces it line by
line):

- ``api.py``: the REST API (``POST /tasks`` and the rest), and ``consistency.py``,
  read-your-writes through any of several managers;
- ``manager.py``: :class:`Manager`, what is stored and wanted (records, history, the
  durable work queue), and ``stores.py``, where it is kept (disk, memory or etcd);
- ``control.py``: the control loop: take what is due, ``reconcile`` it, store the
  decision, send the orders; ``reconcile.py`` is its pure rule;
- ``nodes.py``: the manager's table of workers, their liveness and placement on them
  (with :mod:`cube.feasibility` and :mod:`cube.scheduler`); ``probe.py`` asks them;
- ``observe.py``: the watch of each worker's task list, and the reports it keeps;
- ``health.py``: task health checks and the restart policy; ``retention.py`` and
  ``history.py``: what is forgotten when; ``outputs.py``: a finished task's output kept;
- ``leadership.py``: several managers on etcd, one of them elected to act;
- ``network.py``: how it reaches workers (real HTTP, or the simulator's).
"""

from cube.manager.manager import Manager, open_manager

__all__ = ["Manager", "open_manager"]
