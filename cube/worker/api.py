"""The worker's REST API: the book's routes, with honest status codes.

==========================  ===================================================
``GET    /tasks``            every task on this worker (``[]`` when none). With
                            ``?index=N&wait=5s``, a blocking query: answers once a
                            task changed after index N (``X-Cube-Index`` says the
                            index now). ``?since=N``: only the tasks changed after N
                            (``X-Cube-Forgotten`` lists those forgotten since);
                            ``?state=``, ``?limit=&after=`` (by ID) narrow it.
                            ``?ack=1``: the manager has seen everything up to N
``POST   /tasks``            a TaskEvent, or a bare task; 201 + the task
``GET    /tasks/{id}``       the task, plus what the runtime says about it now
``DELETE /tasks/{id}``       stop it (cancel it if not started); 204. With
                            ``?generation=N``, refused (409) when older than the
                            order the worker follows
``GET    /tasks/{id}/logs``  the last lines its container or process printed
``GET    /stats``            machine statistics (the Go Cube's shape)
``GET    /health``           liveness, and what it can run (runtime, images);
                            open even when a token is required
``PUT    /leader``           a leading manager announces itself (its epoch, proven);
                            204, or 409 when the worker follows a newer leader
``GET    /openapi.json``     this API's OpenAPI document; open as well
==========================  ===================================================

With several managers, an order says which leader sends it: ``X-Cube-Epoch: N`` and
``X-Cube-Epoch-Proof``, signed with the leader secret (:mod:`cube.worker.epoch`). A
worker given that secret carries out only orders (``POST``, ``DELETE``, ``PUT /leader``)
whose proof checks and whose epoch is not older than the one it follows (409, the
answer's headers saying the epoch followed, with its proof); an epoch that does not
check, or none on an order, is a 403, a malformed one a 400, and nothing is stored.
Reads are answered whatever they carry, and never move the epoch. A worker without a
secret takes orders as the book's worker does. On ``/health`` asked without a required
token, the headers are not read at all.

``/stats`` answers from a snapshot refreshed in the background (at most a second old),
and ``/tasks`` reuses each task's JSON until the task changes: a manager asks for both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bottle
import msgspec

from cube.http import (
    FORGOTTEN_HEADER,
    ListCache,
    ListQuery,
    block,
    json_app,
    list_query,
    query_int,
    read_json,
    send_json,
    trusted,
    watch_query,
)
from cube.messages import Logs, RuntimeStatus, Stats, WorkerHealth
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
from cube.proof import PROOF_HEADER
from cube.task import MAX_GENERATION, Task, parse_submission, parse_uuid
from cube.wire import encode
from cube.worker import epoch
from cube.worker.stats import Snapshot
from cube.worker.worker import Worker

if TYPE_CHECKING:
    from cube.roles import Access

STATS_MAX_AGE = 1.0
TAIL = count("tail", "How many of the last lines to return.", default=200)
GENERATION = Query(
    "generation",
    "The order's generation: a stop older than the order the worker follows is refused "
    "(409), so a deposed manager cannot stop a newer copy.",
    {"type": "integer", "minimum": 0, "maximum": MAX_GENERATION},
)
EPOCH = Header(
    epoch.HEADER,
    "The epoch of the leader sending this order (with several managers), believed only "
    f"with {PROOF_HEADER}. An order with an older epoch than the one followed is refused "
    "(409); one the worker cannot check is a 403. Reads never move the epoch followed.",
    {"type": "integer", "minimum": 1, "maximum": epoch.MAX_EPOCH},
    errors=(400, 403),
)
PROOF = Header(
    PROOF_HEADER,
    "SERIES:BORN:SIGNATURE: the etcd series the epoch belongs to, when that series was "
    "born (ms since 1970), and the leader secret's HMAC-SHA256 over both and the epoch.",
    {"type": "string", "pattern": "^[0-9a-f]{16}:[0-9]{1,15}:[A-Za-z0-9_-]{43}$"},
    errors=(400, 403),
)
ORDERS = frozenset({"POST", "DELETE", "PUT"})
# GET /tasks also takes ?index=N&wait=5s (a blocking query, and ?ack=1 with it). The
# document leaves them out: a fuzzer that drew the current index would wait out every
# wait it drew.


class WorkerTask(Task):
    """A task, with what its runtime says about it now (null before it has a
    container)."""

    runtime: RuntimeStatus | None = None


def make_app(worker: Worker, token: str | Access | None = None) -> bottle.Bottle:
    """Build the worker API around ``worker`` (no global routes: one app per worker)."""
    app = json_app(f"cube worker {worker.name}" if worker is not None else "cube worker", token)
    app.config["cube.on_stop"].append(lambda: worker.records.release())
    app.config["cube.on_start"].append(lambda: worker.records.hold())
    app.install(_fence(lambda: worker.epoch))
    takes_header(app, EPOCH)
    takes_header(app, PROOF)
    whole, part = ListCache(key=lambda task: task.id), ListCache(key=lambda task: task.id)
    sample = Snapshot(lambda: encode(Stats.from_wire(worker.stats())), STATS_MAX_AGE)

    @app.get("/health", doc=Doc("worker health", WorkerHealth, said="Alive.", open=True))
    def health() -> bytes:
        can = worker.capabilities()
        return send_json(
            WorkerHealth(
                name=worker.name,
                runtime=can.runtime,
                images=list(can.images),
                pulls=can.pulls,
                epoch=worker.epoch.value,
            )
        )

    @app.get(
        "/tasks",
        doc=Doc("list worker tasks", list[Task], said="The tasks.", errors=(400, 410), query=LIST),
    )
    def list_tasks() -> bytes:
        query = list_query()
        watch = watch_query()
        if watch and bottle.request.query.get("ack") == "1" and trusted():
            worker.acknowledge(watch[0])
        block(worker.records.changes)
        if query.since is not None:
            forgotten = worker.records.forgotten_since(query.since)
            bottle.response.set_header(FORGOTTEN_HEADER, ",".join(forgotten))
        listing = whole if query == ListQuery() else part
        return send_json(listing.encode(worker.records.select(query)))

    @app.post("/tasks", doc=submit_doc("worker"))
    def submit() -> bytes:
        task = worker.submit(parse_submission(read_json()))
        return send_json(task, 201)

    @app.get("/tasks/<task_id>", doc=Doc("get a worker task", WorkerTask, errors=(400, 404)))
    def get_task(task_id: str) -> bytes:
        task_uuid = str(parse_uuid(task_id))
        block(worker.records.changes)
        task = worker.get_task(task_uuid)
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

    @app.put(
        "/leader",
        doc=Doc(
            "follow a leading manager",
            status=204,
            said="Followed from now on (or already).",
            errors=(400, 403, 409),
        ),
    )
    def follow() -> None:
        """Nothing to do here: the fence admitted the order, which is the whole of it."""
        bottle.response.status = 204

    serve_document(app, "Cube worker", "Runs tasks on one machine.")
    return app


def _fence(leader: Callable[[], epoch.LeaderEpoch]) -> Callable[..., Any]:
    """The plugin that reads ``X-Cube-Epoch`` and its proof on every route: a stamp that
    cannot be believed is refused whatever the route, and an order is admitted (or
    refused) and carried out under the stamp it came with. Reads move nothing."""

    def plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not trusted():
                return callback(*args, **kwargs)
            header = bottle.request.get_header
            stamp = leader().believe(header(epoch.HEADER), header(PROOF_HEADER))
            if bottle.request.method not in ORDERS:
                return callback(*args, **kwargs)
            with leader().order(stamp):
                return callback(*args, **kwargs)

        return wrapper

    return plugin


def worker_document() -> dict[str, Any]:
    """The worker API's OpenAPI document, as the app serves it."""
    return document(make_app(None))  # type: ignore[arg-type]  # routes only, never called
