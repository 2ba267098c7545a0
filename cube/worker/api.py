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

``/stats`` answers from a snapshot refreshed in the background (at most a second old),
and ``/tasks`` reuses its answer while the worker's index (bumped by every change of a
record) stays the same, and each task's JSON until the task changes: a manager polls
both.
"""

from __future__ import annotations

from typing import Any

import bottle
import msgspec

from cube.http import INDEX_HEADER, json_app, query_int, read_json, send_json, watch_query
from cube.messages import Logs, RuntimeStatus, Stats, WorkerHealth
from cube.openapi import Doc, Query, count, document, serve_document
from cube.task import MAX_GENERATION, Task, TaskEvent, parse_submission, parse_uuid
from cube.wire import ListCache, encode
from cube.worker.stats import Snapshot
from cube.worker.worker import Worker

STATS_MAX_AGE = 1.0
TAIL = count("tail", "How many of the last lines to return.", default=200)
GENERATION = Query(
    "generation",
    "The order's generation: a stop older than the order the worker follows is refused "
    "(409), so a deposed manager cannot stop a newer copy.",
    {"type": "integer", "minimum": 0, "maximum": MAX_GENERATION},
)
# GET /tasks also takes ?index=N&wait=5s (a blocking query). The document leaves them
# out: a fuzzer that guessed the current index would wait out every wait it drew.


class WorkerTask(Task):
    """A task, with what its runtime says about it now (null before it has a
    container)."""

    runtime: RuntimeStatus | None = None


def make_app(worker: Worker, token: str | None = None) -> bottle.Bottle:
    """Build the worker API around ``worker`` (no global routes: one app per worker)."""
    app = json_app("cube worker", token)
    app.config["cube.on_stop"].append(lambda: worker.release_watchers())
    listing = ListCache(key=lambda task: task.id)
    last: list[tuple[int, bytes]] = []  # (index, answer) of the latest listing
    sample = Snapshot(lambda: encode(Stats.from_wire(worker.stats())), STATS_MAX_AGE)

    def tasks_at(index: int) -> bytes:
        """The task list as of ``index``: read and encoded again only after a change."""
        if last and last[0][0] == index:
            return last[0][1]
        answer = listing.encode(worker.tasks())  # read after the index: never older
        last[:] = [(index, answer)]
        return answer

    @app.get("/health", doc=Doc("worker health", WorkerHealth, said="Alive.", open=True))
    def health() -> bytes:
        can = worker.capabilities()
        return send_json(
            WorkerHealth(
                name=worker.name, runtime=can.runtime, images=list(can.images), pulls=can.pulls
            )
        )

    @app.get("/tasks", doc=Doc("list worker tasks", list[Task], said="The tasks."))
    def list_tasks() -> bytes:
        watch = watch_query()
        index = worker.wait_index(*watch) if watch else worker.index
        bottle.response.set_header(INDEX_HEADER, str(index))
        return send_json(tasks_at(index))

    @app.post(
        "/tasks",
        doc=Doc(
            "submit a task to the worker",
            Task,
            status=201,
            said="Accepted; the task as stored now.",
            errors=(400, 404, 409, 413, 415),
            body=(Task.__strict__, TaskEvent.__strict__),
        ),
    )
    def submit() -> bytes:
        task = worker.submit(parse_submission(read_json()))
        return send_json(task, 201)

    @app.get("/tasks/<task_id>", doc=Doc("get a worker task", WorkerTask, errors=(400, 404)))
    def get_task(task_id: str) -> bytes:
        task = worker.get_task(str(parse_uuid(task_id)))
        status = worker.inspect(str(task.id))
        runtime = RuntimeStatus.from_wire(status.to_wire()) if status else None
        return send_json(WorkerTask(**msgspec.structs.asdict(task), runtime=runtime))

    @app.delete(
        "/tasks/<task_id>",
        doc=Doc(
            "stop a worker task",
            status=204,
            said="Stopping (or cancelled, if it had not started).",
            errors=(400, 404, 409),
            query=(GENERATION,),
        ),
    )
    def stop_task(task_id: str) -> None:
        asked = "generation" in bottle.request.query
        generation = query_int("generation", 0, MAX_GENERATION) if asked else None
        worker.stop_task(str(parse_uuid(task_id)), generation)
        bottle.response.status = 204

    @app.get(
        "/tasks/<task_id>/logs",
        doc=Doc(
            "get a worker task's logs",
            Logs,
            said="Its last lines of output.",
            errors=(400, 404),
            query=(TAIL,),
        ),
    )
    def logs(task_id: str) -> bytes:
        task_uuid = str(parse_uuid(task_id))
        return send_json(Logs(id=task_uuid, logs=worker.logs(task_uuid, query_int("tail", 200))))

    @app.get("/stats", doc=Doc("machine statistics", Stats, said="A sample."))
    def stats() -> bytes:
        return send_json(sample.get())

    serve_document(app, "Cube worker", "Runs tasks on one machine.")
    return app


def worker_document() -> dict[str, Any]:
    """The worker API's OpenAPI document, as the app serves it."""
    return document(make_app(None))  # type: ignore[arg-type]  # routes only, never called
