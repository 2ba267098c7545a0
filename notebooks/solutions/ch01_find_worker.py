"""Chapter 1: find the worker that runs a task, by asking every worker."""

from cube.lab.exercise import exercise
from cube.task import State


@exercise("ch01_find_worker")
def find_worker(cluster, task_id):
    """The name of the worker that runs ``task_id`` (a copy in state Running), or None."""
    for name in cluster.workers:
        with cluster.worker_client(name) as worker:
            for task in worker.tasks():
                if str(task.id) == task_id and task.state is State.Running:
                    return name
    return None
