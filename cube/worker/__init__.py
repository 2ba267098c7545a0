"""The worker: runs tasks on one machine (worker.py), serves its API (api.py), and
reports machine statistics (stats.py)."""

from cube.worker.worker import Worker, open_worker

__all__ = ["Worker", "open_worker"]
