"""The manager's REST API: the book's routes plus task details, logs and events.

==========================  ===================================================
``GET    /tasks``            every task, oldest first (``[]`` when none)
``POST   /tasks``            a TaskEvent, or a bare task; 201 once stored
``GET    /tasks/{id}``       one task
``DELETE /tasks/{id}``       stop it wherever it runs (cancel if not started); 204
``GET    /tasks/{id}/logs``  its last lines of output, fetched from its worker
``GET    /nodes``            the workers, their stats and whether they are up
``GET    /events``           the stored task events, newest first (``?limit=&task=``)
``GET    /health``           liveness; open even when a token is required
``GET    /openapi.json``     this API's OpenAPI document; open as well
==========================  ===================================================

``/tasks`` reuses each task's JSON until the task changes. With several managers on
etcd, a write answers ``X-Cube-Revision`` and every route takes it back, so a client
reads its own writes through any manager (:mod:`cube.manager.consistency`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import bottle

from cube.client import CubeError
from cube.http import (
    FORGOTTEN_HEADER,
    ListCache,
    ListQuery,
    block,
    fail,
    json_app,
    list_query,
    query_int,
    read_json,
    send_json,
)
from cube.manager import consistency
from cube.manager.manager import Manager
from cube.messages import Logs, ManagerHealth, NodeInfo
from cube.openapi import (
    LIST,
    Doc,
    Header,
    Query,
    count,
    document,
    serve_document,
    submit_doc,
    takes_header,
)
from cube.roles import Access
from cube.task import Task, TaskEvent, parse_submission, parse_uuid

TAIL = count("tail", "How many of the last lines to return.", default=200)
EVENTS = (
    count("limit", "At most this many events, newest first (0: all).", default=0),
    Query(
        "task",
        "Only this task's events (empty: every task's).",
        {"type": "string", "format": "uuid"},
    ),
)

REVISION = Header(
    consistency.HEADER,
    "The highest X-Cube-Revision this client was answered by a write (several managers "
    "on etcd): the manager first catches up to it, so the client reads its own writes "
    "whichever manager it asks. Submissions and stops answer with it. Without it, a "
    "request is served as before.",
    {"type": "integer", "minimum": 1, "maximum": consistency.MAX_REVISION},
)


def make_app(manager: Manager, token: str | Access | None = None) -> bottle.Bottle:
    """Build the manager API around ``manager`` (one app per manager, no globals)."""
    app = json_app("cube manager", token)
    app.install(consistency.plugin)
    app.install(_durable_first(manager))
    takes_header(app, REVISION)
    whole, part = ListCache(key=lambda task: task.id), ListCache(key=lambda task: task.id)

    def changes() -> tuple[Any, ...]:
        return (manager.tasks.records.changes, manager.nodes.changes, manager.tasks.history.changes)

    app.config["cube.on_stop"].append(lambda: [each.release() for each in changes()])
    app.config["cube.on_start"].append(lambda: [each.hold() for each in changes()])

    @app.get("/health", doc=Doc("manager health", ManagerHealth, said="Alive.", open=True))
    def health() -> bytes:
        leader, epoch = manager.leader()
        return send_json(
            ManagerHealth(
                scheduler=manager.scheduler.name,
                workers=len(manager.nodes.by_name),
                store=manager.stores.describe(),
                leading=manager.acting,
                leader=leader,
                epoch=epoch,
            )
        )

    @app.get(
        "/tasks",
        doc=Doc("list manager tasks", list[Task], said="The tasks.", errors=(400, 410), query=LIST),
    )
    def list_tasks() -> bytes:
        query = list_query()
        records = manager.tasks.records
        manager.catch_up(consistency.asked())
        block(records.changes)
        if query == ListQuery():
            return send_json(whole.encode(manager.list_tasks()))
        if query.since is not None:
            gone = records.forgotten_since(query.since)
            bottle.response.set_header(FORGOTTEN_HEADER, ",".join(gone))
        return send_json(part.encode(records.select(query)))

    @app.post("/tasks", doc=submit_doc("manager"))
    def submit() -> bytes:
        task = manager.submit(parse_submission(read_json()))
        consistency.tell(manager, str(task.id))
        return send_json(task, 201)

    @app.get("/tasks/<task_id>", doc=Doc("get a manager task", Task, errors=(400, 404)))
    def get_task(task_id: str) -> bytes:
        task_uuid = str(parse_uuid(task_id))
        manager.catch_up(consistency.asked(), task_uuid)
        block(manager.tasks.records.changes)
        return send_json(manager.get_task(task_uuid))

    @app.delete(
        "/tasks/<task_id>",
        doc=Doc(
            "stop a manager task",
            status=204,
            said="Stopping (or cancelled, if it had not started).",
            errors=(400, 404, 409),
        ),
    )
    def stop_task(task_id: str) -> None:
        task_uuid = str(parse_uuid(task_id))
        manager.catch_up(consistency.asked(), task_uuid)
        manager.stop(task_uuid)
        consistency.tell(manager, task_uuid)
        bottle.response.status = 204

    @app.get(
        "/tasks/<task_id>/logs",
        doc=Doc(
            "get a manager task's logs",
            Logs,
            said="Its last lines of output (of a finished task, those the manager kept).",
            errors=(400, 404, 410, 502),
            query=(TAIL,),
        ),
    )
    def logs(task_id: str) -> bytes:
        task_uuid = str(parse_uuid(task_id))
        tail = query_int("tail", 200)
        manager.catch_up(consistency.asked(), task_uuid)
        try:
            text = manager.logs(task_uuid, tail)
        except CubeError as exc:
            raise fail(502, f"could not fetch logs from its worker: {exc.message}") from None
        return send_json(Logs(id=task_uuid, logs=text))

    @app.get("/nodes", doc=Doc("list workers", list[NodeInfo], said="The workers."))
    def nodes() -> bytes:
        block(manager.nodes.changes)
        return send_json([n.info() for n in manager.list_nodes()])

    @app.get(
        "/events",
        doc=Doc(
            "list task events",
            list[TaskEvent],
            said="The stored task events.",
            errors=(400,),
            query=EVENTS,
        ),
    )
    def events() -> bytes:
        query = bottle.request.query
        limit = query_int("limit", 0) or None
        task = str(parse_uuid(query["task"], "task")) if query.get("task") else None
        block(manager.tasks.history.changes)
        return send_json(manager.list_events(limit, task))

    serve_document(app, "Cube manager", "Places tasks on workers and keeps them running.")
    return app


def _durable_first(manager: Manager) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The plugin that answers no request before every write so far is on the disk: a
    client's own (201 means stored), and any other it may read. The manager's writes
    are flushed in groups (:mod:`cube.groupcommit`), after its lock is let go, so one
    flush serves every request answered at once."""

    def plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(callback)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            finally:
                manager.tasks.durable()

        return wrapper

    return plugin


def manager_document() -> dict[str, Any]:
    """The manager API's OpenAPI document, as the app serves it."""
    return document(make_app(None))  # type: ignore[arg-type]  # routes only, never called
