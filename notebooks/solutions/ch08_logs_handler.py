"""Chapter 8: the manager's logs route: find the task, ask the worker that runs it."""

from cube.client import CubeError, NotFound, WorkerClient
from cube.lab.exercise import exercise
from cube.task import UnknownTask, ValidationError, error_body, parse_uuid


@exercise("ch08_logs_handler")
def logs_handler(manager, task_id):
    """Answer ``GET /tasks/<task_id>/logs``: (status, JSON body)."""
    try:
        task = manager.get_task(str(parse_uuid(task_id)))
    except ValidationError as exc:
        return 400, error_body(400, str(exc))
    except UnknownTask as exc:
        return 404, error_body(404, str(exc))
    if not task.worker:  # never placed: nothing has run, so there is no output
        return 200, {"ID": str(task.id), "Logs": ""}
    try:
        with WorkerClient(task.worker, timeout=1.0) as worker:
            text = worker.logs(task.id)
    except NotFound:
        text = ""  # its worker never had it
    except CubeError as exc:  # Unreachable, or the worker failed
        return 502, error_body(502, f"could not get the logs from {task.worker}: {exc.message}")
    return 200, {"ID": str(task.id), "Logs": text}
