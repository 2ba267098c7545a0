"""The worker's REST API: the book's routes, with honest status codes.

==========================  ===================================================
``GET    /tasks``            every task on this worker (``[]`` when none); with
                            ``?index=N&wait=5s`` a blocking query: answers once a
                            task changed after index N (header ``X-Cube-Index``)
``POST   /tasks``            a TaskEvent, or a bare task; 201 + the task
``GET    /tasks/{id}``       the task, plus what the runtime says about it now
``DELETE /tasks/{id}``       stop it (cancel it if not started); 204. With
                            ``?generation=N``, refused (409) when older than the
                            order the worker follows
``GET    /tasks/{id}/logs``  the last lines its container or process printed
``GET    /stats``            machine statistics (the Go Cube's shape)
``GET    /health``           liveness, and what it can run (runtime, images);
                            open even when a token is required
``GET    /openapi.json``     this API's OpenAPI document; open as well
==========================  ===================================================
"""

from __future__ import annotations

import bottle

from cube.http import INDEX_HEADER, json_app, query_int, read_json, send_json, watch_query
from cube.openapi import serve_document, worker_document
from cube.task import MAX_GENERATION, parse_submission, parse_uuid
from cube.worker.worker import Worker


def make_app(worker: Worker, token: str | None = None) -> bottle.Bottle:
    """Build the worker API around ``worker`` (no global routes: one app per worker)."""
    app = json_app(f"cube worker {worker.name}", token)
    app.config["cube.on_stop"].append(worker.release_watchers)

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"Status": "ok", "Name": worker.name, **worker.capabilities().to_wire()}

    @app.get("/tasks")
    def list_tasks() -> str:
        watch = watch_query()
        index = worker.wait_index(*watch) if watch else worker.index
        bottle.response.set_header(INDEX_HEADER, str(index))
        return send_json([t.to_wire() for t in worker.tasks()])

    @app.post("/tasks")
    def submit() -> str:
        task = worker.submit(parse_submission(read_json()))
        return send_json(task.to_wire(), 201)

    @app.get("/tasks/<task_id>")
    def get_task(task_id: str) -> str:
        task = worker.get_task(str(parse_uuid(task_id)))
        status = worker.inspect(str(task.id))
        return send_json({**task.to_wire(), "Runtime": status.to_wire() if status else None})

    @app.delete("/tasks/<task_id>")
    def stop_task(task_id: str) -> None:
        asked = "generation" in bottle.request.query
        generation = query_int("generation", 0, MAX_GENERATION) if asked else None
        worker.stop_task(str(parse_uuid(task_id)), generation)
        bottle.response.status = 204

    @app.get("/tasks/<task_id>/logs")
    def logs(task_id: str) -> dict[str, object]:
        task_uuid = str(parse_uuid(task_id))
        return {"ID": task_uuid, "Logs": worker.logs(task_uuid, query_int("tail", 200))}

    @app.get("/stats")
    def stats() -> dict[str, object]:
        return worker.stats()

    serve_document(app, worker_document())
    return app
