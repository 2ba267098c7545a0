"""Several managers on one real etcd: a client that wrote through one manager reads its
write through any other, at once, every time (each answers from its own copy of the
tasks, which an etcd watch keeps current a few milliseconds behind)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from etcd_helpers import unique_prefix, wipe
from test_managers_etcd import Managers

from cube.cli import cli
from cube.client import ManagerClient
from cube.etcd import EtcdClient
from cube.task import State, Task

pytestmark = pytest.mark.etcd

TRIES = 100


@pytest.fixture
def cluster(etcd_ok, tmp_path):
    prefix = unique_prefix("ryw")
    managers = Managers(tmp_path, etcd_ok, prefix)
    yield managers
    managers.close()
    with EtcdClient(etcd_ok) as client:
        wipe(client, prefix)


def unplaceable(n: int) -> Task:
    """A task no worker has room for: it stays Pending (no process is started), and a
    stop cancels it."""
    return Task(name=f"ryw-{n}", image="cube/echo", memory=1 << 50)


def test_a_write_through_one_manager_is_read_through_another(cluster):
    cluster.start_worker("w1")
    cluster.start_managers("m1", "m2")
    urls = [cluster.manager_url("m1"), cluster.manager_url("m2")]
    first = ManagerClient(urls[0], timeout=10)
    clients = [first, first.at(urls[1])]  # one client, two managers, what it wrote shared
    for n in range(TRIES):
        writer, reader = clients[n % 2], clients[1 - n % 2]
        task = writer.submit(unplaceable(n))
        assert reader.task(task.id).name == task.name  # found at once, not 404
        reader.stop(task.id)  # a stop through the other finds it too
        assert writer.task(task.id).desired is State.Completed  # and is seen at once
    assert first.revision.value > 0


def test_a_stop_through_another_manager_finds_the_task_without_a_revision(cluster):
    """curl sends no revision: a task the asked manager does not know yet is looked up
    in etcd before it answers 404."""
    cluster.start_worker("w1")
    cluster.start_managers("m1", "m2")
    urls = [cluster.manager_url("m1"), cluster.manager_url("m2")]
    for n in range(TRIES // 2):
        body = {"Name": f"bare-{n}", "Image": "cube/echo", "Memory": 1 << 50}
        created = requests.post(urls[n % 2] + "/tasks", json=body, timeout=10)
        assert created.status_code == 201 and int(created.headers["X-Cube-Revision"]) > 0
        task_id = created.json()["ID"]
        stopped = requests.delete(f"{urls[1 - n % 2]}/tasks/{task_id}", timeout=10)
        assert stopped.status_code == 204, stopped.text


def test_the_cli_reads_what_an_earlier_command_wrote_through_another_manager(cluster):
    """Each `cube` command is a process of its own: what one was answered with is left
    for the next (CUBE_STATE_DIR, a scratch folder here)."""
    cluster.start_worker("w1")
    cluster.start_managers("m1", "m2")
    urls = [cluster.manager_url("m1"), cluster.manager_url("m2")]
    runner = CliRunner()

    def cube(*args: str) -> dict:
        result = runner.invoke(cli, [*args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if result.stdout.strip() else {}

    for n in range(TRIES // 4):
        one, other = urls[n % 2], urls[1 - n % 2]
        task = cube("run", "--name", f"cli-{n}", "--image", "cube/echo", "--memory", str(1 << 50),
                    "--manager", one)  # fmt: skip
        kept = Path(os.environ["CUBE_STATE_DIR"], "revision").read_text()
        assert int(kept) > 0  # what the next command starts from
        assert cube("status", task["ID"], "--manager", other)["ID"] == task["ID"]
        runner.invoke(cli, ["stop", task["ID"], "--manager", other], catch_exceptions=False)
        assert cube("status", task["ID"], "--manager", one)["Desired"] == int(State.Completed)


def test_a_bad_revision_is_refused_naming_the_header_and_changes_nothing(cluster):
    cluster.start_worker("w1")
    cluster.start_managers("m1")
    url = cluster.manager_url("m1")
    for bad in ("", "x", "0", "-1", "1.5", str(1 << 63)):
        headers = {"X-Cube-Revision": bad}
        body = {"Name": "refused", "Image": "cube/echo"}
        for answer in (
            requests.get(url + "/tasks", headers=headers, timeout=5),
            requests.post(url + "/tasks", json=body, headers=headers, timeout=5),
        ):
            assert answer.status_code == 400, (bad, answer.status_code)
            assert "X-Cube-Revision" in answer.json()["Message"]
    assert requests.get(url + "/tasks", timeout=5).json() == []
