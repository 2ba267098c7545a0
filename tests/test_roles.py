"""Separate credentials for managers and clients (cube/roles.py), on real servers.

A worker takes orders only with the manager token, a client token only reads it; a
manager takes submissions, stops and reads with the client token; the old single token
still grants everything. A refused request is 401 or 403 naming the credential it
needs, and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

from cube.client import CubeError, Unauthorized, WorkerClient
from cube.http import Server
from cube.roles import Access
from cube.worker import Worker, open_worker
from cube.worker.api import make_app

ADMIN, MANAGER, CLIENT = "admin-t0ken", "manager-t0ken", "client-t0ken"
TASK = {"Name": "web", "Image": "cube/echo"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def worker(tmp_path) -> Iterator[Worker]:
    node = open_worker("roles", tmp_path, "process", "memory")
    try:
        yield node
    finally:
        node.close(suspend_tasks=True)


@pytest.fixture
def worker_url(worker) -> Iterator[str]:
    access = Access.worker(ADMIN, MANAGER, CLIENT)
    with Server(make_app(worker, access), token_required=bool(access)) as server:
        yield server.url


def test_a_worker_takes_orders_only_with_the_manager_token(worker, worker_url):
    refused = requests.post(f"{worker_url}/tasks", json=TASK, headers=bearer(CLIENT), timeout=5)
    assert refused.status_code == 403
    message = refused.json()["Message"]
    assert "client token" in message and "CUBE_MANAGER_TOKEN" in message, message
    assert worker.tasks() == []  # refused, and nothing changed

    accepted = requests.post(f"{worker_url}/tasks", json=TASK, headers=bearer(MANAGER), timeout=5)
    assert accepted.status_code == 201, accepted.text
    task_id = accepted.json()["ID"]
    stop = requests.delete(f"{worker_url}/tasks/{task_id}", headers=bearer(CLIENT), timeout=5)
    assert stop.status_code == 403
    before = worker.get_task(task_id)

    with pytest.raises(CubeError) as refused_stop:
        WorkerClient(worker_url, token=CLIENT).stop(task_id)
    assert refused_stop.value.status == 403
    assert worker.get_task(task_id) == before  # still wanted as it was


def test_a_client_token_reads_a_worker(worker_url):
    for path in ("/tasks", "/stats", f"/tasks/{uuid.uuid4()}"):
        answer = requests.get(f"{worker_url}{path}", headers=bearer(CLIENT), timeout=5)
        assert answer.status_code in (200, 404), (path, answer.text)
        assert answer.status_code != 404 or "no task" in answer.json()["Message"].lower()
    assert WorkerClient(worker_url, token=CLIENT).tasks() == []


def test_no_token_or_an_unknown_one_is_401_naming_what_is_needed(worker, worker_url):
    for headers in ({}, bearer("guess")):
        answer = requests.post(f"{worker_url}/tasks", json=TASK, headers=headers, timeout=5)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        message = answer.json()["Message"]
        assert message.startswith("missing or wrong token"), message
        assert "CUBE_MANAGER_TOKEN" in message and "CUBE_TOKEN" in message, message
        read = requests.get(f"{worker_url}/tasks", headers=headers, timeout=5)
        assert read.status_code == 401
        assert "CUBE_CLIENT_TOKEN" in read.json()["Message"]
    with pytest.raises(Unauthorized):
        WorkerClient(worker_url).tasks()
    assert requests.get(f"{worker_url}/health", timeout=5).status_code == 200  # open
    assert worker.tasks() == []


def test_the_single_token_still_grants_everything(worker, worker_url):
    client = WorkerClient(worker_url, token=ADMIN)
    task = client.submit({"Name": "web", "Image": "cube/echo"})
    assert [t.id for t in client.tasks()] == [task.id]
    client.stop(str(task.id))


def test_a_client_read_cannot_move_a_workers_epoch(worker, worker_url):
    """What a read says is ignored unless its token may give orders: a client cannot
    fence the real leader out by sending a huge epoch on a read."""
    headers = {**bearer(CLIENT), "X-Cube-Epoch": "999"}
    assert requests.get(f"{worker_url}/tasks", headers=headers, timeout=5).status_code == 200
    assert worker.epoch.value == 0


def test_a_manager_takes_submissions_with_the_client_token():
    """The manager's side of the rule, on a real server: orders and reads with the
    client (or admin) token, nothing with the manager's own token to workers."""
    import bottle

    from cube.http import json_app

    access = Access.manager(ADMIN, CLIENT)
    app = json_app("roles", access)
    taken: list[str] = []

    @app.post("/tasks")
    def submit() -> dict[str, str]:
        taken.append("x")
        bottle.response.status = 201
        return {}

    with Server(app, token_required=True) as server:
        url = f"{server.url}/tasks"
        assert requests.post(url, json=TASK, headers=bearer(CLIENT), timeout=5).status_code == 201
        assert requests.post(url, json=TASK, headers=bearer(ADMIN), timeout=5).status_code == 201
        other = requests.post(url, json=TASK, headers=bearer(MANAGER), timeout=5)
        assert other.status_code == 401
        assert "CUBE_CLIENT_TOKEN" in other.json()["Message"]
    assert taken == ["x", "x"]


def test_a_client_read_cannot_let_a_worker_forget_what_finished(worker, worker_url):
    """``?ack=1`` on a watch tells a worker the manager has seen what finished, so it
    may forget it: only a token that may give orders can say so."""
    requests.post(f"{worker_url}/tasks", json=TASK, headers=bearer(MANAGER), timeout=5)
    index = worker.records.changes.index
    assert index > 0
    watch = f"{worker_url}/tasks?index={index}&wait=0s&ack=1"
    assert requests.get(watch, headers=bearer(CLIENT), timeout=5).status_code == 200
    assert worker.acked < index
    assert requests.get(watch, headers=bearer(MANAGER), timeout=5).status_code == 200
    assert worker.acked == index
