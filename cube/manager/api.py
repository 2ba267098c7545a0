"""The manager's REST API: the book's routes plus task details, logs and events.

==========================  ===================================================
``GET    /tasks``            every task, oldest first (``[]`` when none); blocking
                            queries (``?index=N&wait=5s``), deltas (``?since=N``),
                            ``?state=``, pages (``?limit=&after=``), as on a worker
``POST   /tasks``            a TaskEvent, or a bare task; 201 once stored
``GET    /tasks/{id}``       one task
``DELETE /tasks/{id}``       stop it wherever it runs (cancel if not started); 204
``GET    /tasks/{id}/logs``  its last lines of output, fetched from its worker
``GET    /nodes``            the workers, their stats and whether they are up
``GET    /events``           the stored task events, newest first (``?limit=&task=``)
==========================  ===================================================

Every read answers ``X-Cube-Index``; with ``?index=N&wait=5s`` it waits until what it
reads (the tasks, the nodes or the events) changed after N, like Consul's and Nomad's
blocking queries. A client that sends no ``index`` gets the book's answers, unchanged.

==========================  ===================================================
``GET    /health``           liveness; open even when a token is required
``GET    /openapi.json``     this API's OpenAPI document; open as well
==========================  ===================================================
"""

from __future__ import annotations

import bottle

from cube.client import CubeError
from cube.http import (
    ListQuery,
    block,
    fail,
    json_app,
    list_query,
    query_int,
    read_json,
    send_json,
)
from cube.manager.manager import Manager
from cube.openapi import manager_document, serve_document
from cube.task import parse_submission, parse_uuid


def make_app(manager: Manager, token: str | None = None) -> bottle.Bottle:
    """Build the manager API around ``manager`` (one app per manager, no globals)."""
    app = json_app("cube manager", token)
    for changes in (manager.records.changes, manager.cluster.changes, manager.history.changes):
        app.config["cube.on_stop"].append(changes.release)
        app.config["cube.on_start"].append(changes.hold)

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"Status": "ok", "Scheduler": manager.scheduler.name, "Workers": len(manager.nodes)}

    @app.get("/tasks")
    def list_tasks() -> str:
        query = list_query()
        block(manager.records.changes)
        tasks = manager.list_tasks() if query == ListQuery() else manager.records.select(query)
        return send_json([t.to_wire() for t in tasks])

    @app.post("/tasks")
    def submit() -> str:
        return send_json(manager.submit(parse_submission(read_json())).to_wire(), 201)

    @app.get("/tasks/<task_id>")
    def get_task(task_id: str) -> str:
        task_uuid = str(parse_uuid(task_id))
        block(manager.records.changes)
        return send_json(manager.get_task(task_uuid).to_wire())

    @app.delete("/tasks/<task_id>")
    def stop_task(task_id: str) -> None:
        manager.stop(str(parse_uuid(task_id)))
        bottle.response.status = 204

    @app.get("/tasks/<task_id>/logs")
    def logs(task_id: str) -> dict[str, object]:
        task_uuid = str(parse_uuid(task_id))
        tail = query_int("tail", 200)
        try:
            text = manager.logs(task_uuid, tail)
        except CubeError as exc:
            raise fail(502, f"could not fetch logs from its worker: {exc.message}") from None
        return {"ID": task_uuid, "Logs": text}

    @app.get("/nodes")
    def nodes() -> str:
        block(manager.cluster.changes)
        return send_json([n.to_wire() for n in manager.list_nodes()])

    @app.get("/events")
    def events() -> str:
        query = bottle.request.query
        limit = query_int("limit", 0) or None
        task = str(parse_uuid(query["task"], "task")) if query.get("task") else None
        block(manager.history.changes)
        return send_json([e.to_wire() for e in manager.list_events(limit, task)])

    serve_document(app, manager_document())
    return app
