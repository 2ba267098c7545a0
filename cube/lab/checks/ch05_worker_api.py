"""Chapter 5: the worker's stop route, written by the learner, answering real HTTP.

``stop_handler(worker, task_id) -> (status, body)`` is wrapped in a real route,
``DELETE /tasks/<task_id>``, on a real server in front of a real worker, and the
checker calls it the way a manager would: a running task (204, and it stops), the same
task again (409), a task that was just posted and has not started (204: cancelled), a
task the worker never had (404), and an ID that is not one (400). Every error must
carry Cube's JSON body, ``{"HTTPStatusCode": ..., "Message": ...}``; an exception that
escapes the handler is what a caller sees as a 500, and the verdict says so.
"""

from __future__ import annotations

import json
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import bottle
import requests

from cube.http import Server
from cube.lab.checks.core import Check, wait_until
from cube.lab.verdict import Verdict
from cube.lab.watch import Watch, of_worker
from cube.task import State, Task, TaskEvent

Handler = Callable[[Any, str], tuple[int, Any]]
LANE = "the notebook's worker"
HINTS = (
    (
        "each way the request can go wrong has its own status: a bad ID, a task the worker "
        "never had, a task that cannot be stopped"
    ),
    (
        "catch each error the worker raises and turn it into a status and Cube's JSON error "
        "body; an escaping exception is a 500"
    ),
    (
        "parse the ID with parse_uuid (ValidationError: 400), then worker.stop_task "
        "(UnknownTask: 404, TransitionError: 409); answer (204, None) when it worked, and "
        "(status, error_body(status, str(exc))) when not"
    ),
)


def check_stop_handler(stop_handler: Handler, worker: Any) -> Verdict:
    """Serve ``stop_handler`` as ``DELETE /tasks/<id>`` for ``worker`` and call it."""
    check = Check("05 · the stop route", HINTS, "the worker's tasks during the check")
    errors: list[BaseException] = []
    server = Server(_app(stop_handler, worker, errors)).start()
    mine: set[str] = set()
    only = lambda t: str(t.id) in mine  # noqa: E731
    try:
        with check, Watch(of_worker(worker, LANE, only), check.timeline):
            _requests(check, server.url, worker, mine, errors)
    finally:
        server.stop()
        _tidy(worker, mine)
    return check.verdict("every request got the right answer, and the tasks did what it said")


def _app(handler: Handler, worker: Any, errors: list[BaseException]) -> bottle.Bottle:
    app = bottle.Bottle()
    app.config["catchall"] = False  # a raising handler is a 500, seen by the checker

    @app.delete("/tasks/<task_id>")
    def route(task_id: str) -> str:
        try:
            status, body = handler(worker, task_id)
        except BaseException as exc:  # what a real server turns into a 500
            errors.append(exc)
            status, body = 500, {"HTTPStatusCode": 500, "Message": _last_line(exc)}
        bottle.response.status = int(status)
        if body is None:
            return ""
        bottle.response.content_type = "application/json"
        return json.dumps(body)

    return app


def _last_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def _requests(
    check: Check, url: str, worker: Any, mine: set[str], errors: list[BaseException]
) -> None:
    def delete(task_id: str) -> requests.Response:
        answer = requests.delete(f"{url}/tasks/{task_id}", timeout=10)
        if errors and isinstance(errors[-1], NotImplementedError):
            check.stub = True
            check.stop("stop_handler is still the stub: it raised NotImplementedError")
        return answer

    nobody = str(uuid.uuid4())
    _expect(check, "a task the worker never had", delete(nobody), 404)
    _expect(check, "an ID that is not a UUID", delete("not-a-uuid"), 400)
    web = _running(worker, "stop-me", mine)
    answer = delete(str(web.id))
    if _expect(check, "a running task", answer, 204):
        done = wait_until(lambda: _state(worker, web) is State.Completed, timeout=5)
        if done is None:
            check.fail(
                f"you answered 204 but the task is still {_state(worker, web).name}: "
                "the handler must ask the worker to stop it"
            )
    _expect(check, "the same task again, now Completed", delete(str(web.id)), 409)
    fresh = worker.submit(TaskEvent(Task(name="just-posted", image=_image(worker))))
    mine.add(str(fresh.id))
    if _expect(check, "a task just posted, not started yet", delete(str(fresh.id)), 204):
        wait_until(lambda: _state(worker, fresh) is State.Completed, timeout=5)


def _expect(check: Check, what: str, answer: requests.Response, status: int) -> bool:
    """Is ``answer`` the right status with the right body? Records what is wrong."""
    if answer.status_code != status:
        why = f"{answer.status_code}, not {status}"
        if answer.status_code == 500:
            why += f": the handler raised {answer.json()['Message']}"
        check.fail(f"for {what} the answer was {why}")
        return False
    if status == 204:
        if answer.content:
            check.fail(f"for {what} the 204 answer had a body; 204 means no content")
        return True
    try:
        body = answer.json()
    except ValueError:
        check.fail(f"for {what} the body is not JSON: {answer.text[:80]!r}")
        return False
    if not (
        isinstance(body, dict) and body.get("HTTPStatusCode") == status and body.get("Message")
    ):
        check.fail(
            f"for {what} the body is {body!r}; Cube's errors are "
            '{"HTTPStatusCode": status, "Message": "what went wrong"}'
        )
        return False
    return True


def _running(worker: Any, name: str, mine: set[str]) -> Task:
    task = worker.submit(TaskEvent(Task(name=name, image=_image(worker))))
    mine.add(str(task.id))
    return worker.wait_for(str(task.id), State.Running, timeout=10)


def _image(worker: Any) -> str:
    return "cube/echo" if worker.runtime.name == "process" else "cube/busybox:latest"


def _state(worker: Any, task: Task) -> State:
    return worker.get_task(str(task.id)).state


def _tidy(worker: Any, mine: set[str]) -> None:
    for task_id in mine:
        task = worker.get_task(task_id)
        if task.state in (State.Scheduled, State.Running):
            worker.stop_task(task_id)
            wait_until(lambda tid=task_id: worker.get_task(tid).state is State.Completed, 5)
