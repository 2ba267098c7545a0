"""Chapter 5: the worker's stop route, as a function from a request to an answer."""

from cube.lab.exercise import exercise
from cube.task import TransitionError, UnknownTask, ValidationError, error_body, parse_uuid


@exercise("ch05_stop_handler")
def stop_handler(worker, task_id):
    """Answer ``DELETE /tasks/<task_id>``: (status, body), body None for no content."""
    try:
        worker.stop_task(str(parse_uuid(task_id)))
    except ValidationError as exc:  # not a UUID
        return 400, error_body(400, str(exc))
    except UnknownTask as exc:  # never had it
        return 404, error_body(404, str(exc))
    except TransitionError as exc:  # its state does not allow it: already Completed
        return 409, error_body(409, str(exc))
    return 204, None
