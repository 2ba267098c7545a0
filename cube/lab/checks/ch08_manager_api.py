"""Chapter 8: a route of the manager's API, written by the learner: a task's logs.

A running task's output is only on its worker; ``GET /tasks/<id>/logs`` must find the task,
ask *the worker that runs it* (the task's ``Worker``), and pass the answer on. The
learner's ``logs_handler(manager, task_id) -> (status, body)`` is served as that route on
a real server, with ``manager`` standing for the cluster's live manager (its
``get_task``). The checker asks for the logs of tasks on two different workers (each
with its own lines), of a task still waiting for room (no worker yet), of a task nobody
has, and of one whose ID is not an ID; then the nemesis pauses the worker of a task
and the route must still answer, quickly, that the worker cannot be reached.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import bottle
import requests

from cube.client import BadRequest, ManagerClient, NotFound
from cube.cluster import LocalCluster
from cube.http import Server
from cube.lab.checks.core import Check, wait_until
from cube.lab.nemesis import Nemesis
from cube.lab.verdict import Verdict
from cube.lab.view import ClusterView
from cube.lab.watch import Watch, of_client
from cube.task import State, Task, UnknownTask, ValidationError

Handler = Callable[[Any, str], tuple[int, Any]]
HINTS = (
    (
        "the manager keeps no output itself: which worker holds the task's logs, and what if "
        "it does not answer?"
    ),
    (
        "find the task (400 for a bad ID, 404 for none), ask the worker in task.worker with a"
        " short timeout, and answer 502 when it cannot be reached"
    ),
    (
        "parse_uuid the ID (400), manager.get_task it (UnknownTask: 404); a task with no "
        "worker yet has no logs; otherwise ask WorkerClient(task.worker, timeout=1).logs(...) "
        "and turn Unreachable into a 502 that names the worker"
    ),
)
SLOW = 3.0  # seconds: an answer about a silent worker must come sooner than this


class LiveManager:
    """The cluster's manager as a route inside it would see it: ``get_task`` raising
    :class:`~cube.task.UnknownTask` or :class:`~cube.task.ValidationError`."""

    def __init__(self, client: ManagerClient) -> None:
        self.client = client

    def get_task(self, task_id: str) -> Task:
        try:
            return self.client.task(task_id)
        except NotFound:
            raise UnknownTask(task_id) from None
        except BadRequest as exc:
            raise ValidationError("ID", exc.message) from None


def check_logs_handler(logs_handler: Handler, cluster: LocalCluster) -> Verdict:
    """Serve ``logs_handler`` as ``GET /tasks/<id>/logs`` and call it."""
    check = Check("08 · the logs route", HINTS, "the check's tasks, and the pause")
    errors: list[BaseException] = []
    server = Server(_app(logs_handler, LiveManager(cluster.client), errors)).start()
    ids: list[str] = []
    mine = lambda t: str(t.id) in ids  # noqa: E731
    view = ClusterView(cluster)
    try:
        with check, Watch(of_client(cluster.client, view.name, mine), check.timeline):
            check.ready(cluster)
            ask = _asker(check, server.url, errors)
            check.say("asking for the logs of tasks nobody has")
            _errors(check, ask)
            _logs(check, ask, cluster, ids)
    finally:
        server.stop()
        for task_id in ids:
            _stop(cluster, task_id)
    return check.verdict("the route finds each task's worker, and says so when it cannot")


def _app(handler: Handler, manager: LiveManager, errors: list[BaseException]) -> bottle.Bottle:
    app = bottle.Bottle()
    app.config["catchall"] = False  # a raising handler is a 500, seen by the checker

    @app.get("/tasks/<task_id>/logs")
    def route(task_id: str) -> str:
        try:
            status, body = handler(manager, task_id)
        except BaseException as exc:  # what a real server turns into a 500
            errors.append(exc)
            line = traceback.format_exception_only(type(exc), exc)[-1].strip()
            status, body = 500, {"HTTPStatusCode": 500, "Message": line}
        bottle.response.status = int(status)
        bottle.response.content_type = "application/json"
        return json.dumps(body)

    return app


def _asker(check: Check, url: str, errors: list[BaseException]) -> Callable[[str], Any]:
    def ask(task_id: str) -> tuple[requests.Response, float]:
        began = time.monotonic()
        answer = requests.get(f"{url}/tasks/{task_id}/logs", timeout=15)
        took = time.monotonic() - began
        if errors and isinstance(errors[-1], NotImplementedError):
            check.stub = True
            check.stop("logs_handler is still the stub: it raised NotImplementedError")
        return answer, took

    return ask


def _errors(check: Check, ask: Callable[[str], Any]) -> None:
    _status(check, "a task nobody has", ask(str(uuid.uuid4()))[0], 404)
    _status(check, "an ID that is not a UUID", ask("not-a-uuid")[0], 400)


def _status(check: Check, what: str, answer: requests.Response, *wanted: int) -> Any:
    """The JSON body when the status is one of ``wanted`` (errors must be Cube's)."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code not in wanted:
        said = f" ({body.get('Message')})" if isinstance(body, dict) else ""
        wanted_text = " or ".join(map(str, wanted))
        check.fail(f"for {what} the answer was {answer.status_code}, not {wanted_text}{said}")
        return None
    if answer.status_code >= 400 and not (
        isinstance(body, dict) and body.get("HTTPStatusCode") == answer.status_code
    ):
        check.fail(f"for {what} the body {body!r} is not Cube's error body")
        return None
    return body


def _logs(check: Check, ask: Callable[[str], Any], cluster: LocalCluster, ids: list[str]) -> None:
    client, view = cluster.client, ClusterView(cluster)
    check.say("starting tasks on two workers")
    tasks = _two_workers(cluster, ids)
    for task in tasks:
        marker = f"/{task.name}-was-here"
        requests.get(f"http://127.0.0.1:{task.host_port()}{marker}", timeout=5)
        with cluster.worker_client(view.name(task.worker)) as worker:
            wait_until(lambda w=worker, t=task, m=marker: m in w.logs(t.id), timeout=3)
        body = _status(check, f"{task.name} on {view.name(task.worker)}", ask(str(task.id))[0], 200)
        if body is not None and marker not in str(body.get("Logs", "")):
            owner = view.name(task.worker)
            check.fail(
                f"the logs you returned for {task.name} lack the line its own service "
                f"wrote ({marker}): ask the worker in task.worker, {owner}"
            )
    waiting = client.submit({"Name": "logs-waiting", "Image": cluster.image, "Cpu": 512})
    ids.append(str(waiting.id))
    body = _status(
        check, "a task still waiting for room (no worker yet)", ask(str(waiting.id))[0], 200
    )
    if body is not None and body.get("Logs"):
        check.fail("a task that never ran has no output, but you returned some")
    victim = tasks[0]
    check.say(f"pausing {view.name(victim.worker)} and asking for {victim.name}'s logs")
    with Nemesis(cluster, check.timeline).paused(view.name(victim.worker)):
        answer, took = ask(str(victim.id))
    what = f"{victim.name}, whose worker was paused"
    _status(check, what, answer, 502, 503, 504)
    if took > SLOW:
        check.fail(
            f"for {what} the answer took {took:.1f} s: use a short timeout when "
            "asking a worker, so one silent machine cannot hold up the API"
        )


def _two_workers(cluster: LocalCluster, ids: list[str]) -> list[Task]:
    """Running tasks until two of them are on different workers (round-robin or not)."""
    client, found = cluster.client, {}
    for i in range(1, 7):
        task = client.submit({"Name": f"logs-{i}", "Image": cluster.image})
        ids.append(str(task.id))
        task = client.wait_for(task.id, State.Running, timeout=10)
        found.setdefault(task.worker, task)
        if len(found) == 2:
            break
    return list(found.values())


def _stop(cluster: LocalCluster, task_id: str) -> None:
    with contextlib.suppress(Exception):
        if cluster.client.task(task_id).state is not State.Completed:
            cluster.client.stop(task_id)
