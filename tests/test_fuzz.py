"""Fuzz real worker and manager servers with schemathesis, from their own /openapi.json.

Every operation is run in two modes. Positive: requests the document calls valid must
get an answer the document allows (no 5xx, a documented status, content type and
body). Negative: requests the document calls invalid must also be answered as
documented, and must not leave a task, an event or a process behind anywhere.

Real parts only: workers on ProcessRuntime behind cube.http.Server, a manager talking
to them over HTTP. Generation is derandomized (fixed seed, no example database), so a
CI run is the same run every time.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from helpers import eventually
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cube.fields import IMAGE_FORMAT
from cube.http import Server
from cube.manager.api import make_app as manager_app
from cube.manager.api import manager_document
from cube.manager.manager import Manager
from cube.runtime.process import ProcessRuntime
from cube.store import JsonCodec, MemoryStore, WireCodec
from cube.task import Task
from cube.worker import Worker
from cube.worker.api import make_app as worker_app
from cube.worker.api import worker_document

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 200  # per operation and mode: "a few hundred", at a third less of the run
METHODS = ("get", "put", "post", "delete", "patch")


def _image_references() -> st.SearchStrategy[str]:
    """Image references in Docker's grammar, one in ten an image ProcessRuntime runs.
    Drawing them from IMAGE_PATTERN itself costs ~50 ms each; the pattern still filters
    what this draws (schemathesis applies it to a format's values)."""
    alnum = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6)
    separator = st.sampled_from([".", "_", "__", "-", "--"])
    component = st.builds(
        lambda head, rest: head + "".join(sep + part for sep, part in rest),
        alnum,
        st.lists(st.tuples(separator, alnum), max_size=2),
    )
    registry = st.sampled_from(["", "localhost/", "registry.example.com/", "Reg-1.io:5000/"])
    tag_chars = string.ascii_letters + string.digits + "_"
    tag = st.builds(
        lambda first, rest: f":{first}{rest}",
        st.sampled_from(tag_chars),
        st.text(tag_chars + ".-", max_size=20),
    )
    digest = st.binary(min_size=32, max_size=32).map(lambda b: f"@sha256:{b.hex()}")
    reference = st.builds(
        lambda reg, path, tag, digest: reg + "/".join(path) + tag + digest,
        registry,
        st.lists(component, min_size=1, max_size=3),
        st.just("") | tag,
        st.just("") | digest,
    )
    runnable = st.sampled_from(["cube/echo", "cube/busybox", "cube/echo:latest", "cube/echo:v2"])
    return st.integers(0, 9).flatmap(lambda i: runnable if i == 9 else reference)


schemathesis.openapi.format(IMAGE_FORMAT, _image_references())


def operations(document: dict[str, Any], *, with_input: bool = False) -> list[tuple[str, str]]:
    """(METHOD, path) of each operation; with_input: only those that take parameters or
    a body (an operation without inputs has no invalid requests)."""
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            takes = item.get("parameters") or operation.get("parameters")
            if not with_input or takes or "requestBody" in operation:
                found.append((method.upper(), path))
    return found


@dataclass
class Target:
    """A running API, the schema loaded from it, and what it could have started."""

    url: str
    workers: list[Worker]
    manager: Manager | None = None
    seeded: list[str] = field(default_factory=list)
    schema: Any = field(init=False)

    def __post_init__(self) -> None:
        self.schema = schemathesis.openapi.from_url(f"{self.url}/openapi.json")

    def leftovers(self) -> dict[str, list[Any]]:
        """Every task, event and process anyone holds (all empty after invalid input)."""
        found: dict[str, list[Any]] = {}
        if self.manager is not None:
            found["manager tasks"] = self.manager.list_tasks()
            found["manager events"] = self.manager.list_events()
        for worker in self.workers:
            found[f"{worker.name} tasks"] = worker.tasks()
            found[f"{worker.name} processes"] = worker.runtime.list_managed()
        return found


def _worker(tmp: Path, name: str) -> Worker:
    return Worker(
        name,
        MemoryStore(WireCodec(Task)),
        ProcessRuntime(owner=f"fuzz-{name}", state_dir=tmp / name),
        timers=MemoryStore(JsonCodec()),
        inspect_interval=0.5,
    ).start()


def _stop_worker(worker: Worker) -> None:
    worker.close()
    for managed in worker.runtime.list_managed():
        worker.runtime.stop(managed.status.container_id)


@contextmanager
def _served_worker(tmp: Path, name: str) -> Iterator[tuple[Worker, Server]]:
    worker = _worker(tmp, name)
    try:
        with Server(worker_app(worker)) as server:
            yield worker, server
    finally:
        _stop_worker(worker)


@contextmanager
def worker_target(tmp: Path) -> Iterator[Target]:
    with _served_worker(tmp, "w") as (worker, server):
        yield Target(server.url, [worker])


@contextmanager
def manager_target(tmp: Path) -> Iterator[Target]:
    with ExitStack() as stack:
        served = [stack.enter_context(_served_worker(tmp, f"w{i}")) for i in range(2)]
        addresses = [f"{s.host}:{s.port}" for _, s in served]
        manager = Manager(addresses, "roundrobin", update_interval=0.3, health_interval=1)
        stack.callback(manager.close)
        manager.start()
        server = stack.enter_context(Server(manager_app(manager)))
        yield Target(server.url, [w for w, _ in served], manager)


def fuzz(target: Target, method: str, path: str, mode: GenerationMode) -> None:
    """Run schemathesis's cases for one operation against the target."""
    operation = target.schema[path][method]
    session = requests.Session()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=target.url, session=session, checks=CHECKS, timeout=10)

    try:
        run()
    finally:
        session.close()


def seed(target: Target) -> None:
    """Give the target tasks in several states, so that listings and task routes answer
    with real content: one Running, one cancelled or stopped, and (on a manager) one its
    worker refused, which ends Failed."""
    session = requests.Session()
    specs = [
        {"Name": "web", "Image": "cube/echo", "HealthCheck": "/health", "Cpu": 0.5},
        {"Name": "stopped", "Image": "cube/busybox", "ExposedPorts": {"8080": {}}},
    ]
    if target.manager is not None:
        specs.append({"Name": "refused", "Image": "nginx:1.27"})
    for spec in specs:
        response = session.post(f"{target.url}/tasks", json=spec, timeout=10)
        assert response.status_code == 201, response.text
        target.seeded.append(response.json()["ID"])
    assert session.delete(f"{target.url}/tasks/{target.seeded[1]}").status_code == 204
    eventually(
        lambda: session.get(f"{target.url}/tasks/{target.seeded[0]}").json()["State"] == 2,
        what="the seeded task Running",
    )
    session.close()


def _module_target(
    make: Callable[[Path], Any], *, seeded: bool = False
) -> Callable[..., Iterator[Target]]:
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
        with make(tmp_path_factory.mktemp("fuzz")) as target:
            if seeded:
                seed(target)
            yield target

    return fixture


def _fresh_target(make: Callable[[Path], Any]) -> Callable[..., Iterator[Target]]:
    @pytest.fixture
    def fixture(tmp_path: Path) -> Iterator[Target]:
        with make(tmp_path) as target:
            yield target

    return fixture


# Reads go to a target seeded with a few tasks; POST gets a target of its own, because
# the hundreds of tasks it creates would make every later listing (and its validation)
# slow; invalid requests go to targets that must stay empty.
worker_seeded = _module_target(worker_target, seeded=True)
worker_fresh = _fresh_target(worker_target)
worker_invalid = _module_target(worker_target)
manager_seeded = _module_target(manager_target, seeded=True)
manager_fresh = _fresh_target(manager_target)
manager_invalid = _module_target(manager_target)
POST_TASKS = ("POST", "/tasks")


def check_seeded_tasks(target: Target) -> None:
    """Each seeded task's own routes answer as documented (fuzzed IDs never exist)."""
    task_routes = sorted(
        (op for op in operations(target.schema.raw_schema) if "{task_id}" in op[1]),
        key=lambda op: op[0] == "DELETE",  # stop it after reading it
    )
    for task_id in target.seeded:
        for method, path in task_routes:
            case = target.schema[path][method].Case(path_parameters={"task_id": task_id})
            case.call_and_validate(base_url=target.url, checks=CHECKS, timeout=10)


def _reads(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [op for op in operations(document) if op != POST_TASKS]


@pytest.mark.parametrize(("method", "path"), _reads(worker_document()))
def test_worker_answers_valid_requests_as_documented(worker_seeded, method, path):
    fuzz(worker_seeded, method, path, GenerationMode.POSITIVE)


def test_worker_answers_valid_submissions_as_documented(worker_fresh):
    fuzz(worker_fresh, *POST_TASKS, GenerationMode.POSITIVE)


def test_worker_answers_about_existing_tasks_as_documented(worker_seeded):
    check_seeded_tasks(worker_seeded)


@pytest.mark.parametrize(("method", "path"), operations(worker_document(), with_input=True))
def test_worker_refuses_invalid_requests_and_starts_nothing(worker_invalid, method, path):
    fuzz(worker_invalid, method, path, GenerationMode.NEGATIVE)
    assert all(not found for found in worker_invalid.leftovers().values()), (
        worker_invalid.leftovers()
    )


@pytest.mark.parametrize(("method", "path"), _reads(manager_document()))
def test_manager_answers_valid_requests_as_documented(manager_seeded, method, path):
    fuzz(manager_seeded, method, path, GenerationMode.POSITIVE)


def test_manager_answers_valid_submissions_as_documented(manager_fresh):
    fuzz(manager_fresh, *POST_TASKS, GenerationMode.POSITIVE)


def test_manager_answers_about_existing_tasks_as_documented(manager_seeded):
    check_seeded_tasks(manager_seeded)


@pytest.mark.parametrize(("method", "path"), operations(manager_document(), with_input=True))
def test_manager_refuses_invalid_requests_and_starts_nothing(manager_invalid, method, path):
    fuzz(manager_invalid, method, path, GenerationMode.NEGATIVE)
    assert all(not found for found in manager_invalid.leftovers().values()), (
        manager_invalid.leftovers()
    )
