"""Hostile strings: refused with a 400 naming the field, nothing stored, nothing logged
raw; and whatever an older Cube stored is shown escaped, never crashing the CLI."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from test_worker import build_worker, cleanup

from cube.http import Server
from cube.manager import Manager
from cube.manager.api import make_app as manager_app
from cube.manager.manager import Stores
from cube.task import State, Task, TaskEvent
from cube.text import SafeFormatter, printable
from cube.worker.api import make_app as worker_app

SPEC = {"Name": "web", "Image": "cube/echo"}
# (what is sent, the field the 400 must name)
HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({**SPEC, "Name": "\ud800"}, "Task.Name"),  # an unpaired surrogate
    ({**SPEC, "Name": "web\ud800"}, "Task.Name"),
    ({**SPEC, "Name": "we\x9bb"}, "Task.Name"),  # a C1 control (CSI)
    ({**SPEC, "Name": "web\u202etxt.exe"}, "Task.Name"),  # a bidirectional override
    ({**SPEC, "Name": "web\x1b[31m"}, "Task.Name"),
    ({**SPEC, "Name": "my web"}, "Task.Name"),  # not a Docker container name
    ({**SPEC, "Name": "-web"}, "Task.Name"),
    ({**SPEC, "HealthCheck": "/health\r\n2026-01-01 INFO forged"}, "Task.HealthCheck"),
    ({**SPEC, "HealthCheck": "/health\n"}, "Task.HealthCheck"),
    ({**SPEC, "HealthCheck": "/he alth"}, "Task.HealthCheck"),
    ({**SPEC, "Reason": "fine\r\nforged"}, "Task.Reason"),
    ({**SPEC, "Worker": "w\u2066"}, "Task.Worker"),
    ({**SPEC, "ContainerID": "\x00"}, "Task.ContainerID"),
    ({"State": 2, "Task": {**SPEC, "Name": "\ud83d"}}, "TaskEvent.Task.Name"),
    ({"task": {"name": "web", "image": "cube/echo", "healthcheck": "/\x07"}},
     "TaskEvent.Task.HealthCheck"),
    ({**SPEC, "HostPorts": {"80/tcp": [{"HostIp": "1.2.3.4\n", "HostPort": "80"}]}},
     "Task.HostPorts['80/tcp'][0].HostIp"),
]  # fmt: skip
IDS = [f"{i}-{field}" for i, (_, field) in enumerate(HOSTILE)]


@pytest.fixture(params=["worker", "manager"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A running worker or manager API, and a function listing what it stored."""
    if request.param == "worker":
        worker = build_worker(tmp_path, "process").start()
        with Server(worker_app(worker)) as server:
            yield server.url, lambda: worker.tasks()
        cleanup(worker)
    else:
        manager = Manager([])
        with Server(manager_app(manager)) as server:
            yield server.url, lambda: manager.list_tasks() + manager.list_events()
        manager.close()


@pytest.mark.parametrize(("body", "field"), HOSTILE, ids=IDS)
def test_hostile_input_is_a_400_naming_the_field_and_stores_nothing(api, body, field, caplog):
    url, stored = api
    caplog.set_level(logging.DEBUG)
    answer = requests.post(
        f"{url}/tasks",
        data=_json(body),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400, answer.text
    message = answer.json()["Message"]
    assert message.startswith(f"{field}: "), message
    assert stored() == []
    assert requests.get(f"{url}/tasks", timeout=10).json() == []
    formatter = SafeFormatter("%(message)s")
    for record in caplog.records:  # nothing logged would start a line of its own
        line = formatter.format(record)
        assert "\n" not in line and "\r" not in line and "\x1b" not in line, line


def _json(data: Any) -> bytes:
    """JSON as a hostile client sends it (a lone surrogate can only travel escaped)."""
    return json.dumps(data, ensure_ascii=True).encode()


def test_the_safe_formatter_escapes_what_would_forge_a_line() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(SafeFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("cube.test-hostile")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("task %s is unhealthy", "web\r\nINFO all is well\x1b[2J\u202e\ud800")
    finally:
        log.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines == ["WARNING task web\\r\\nINFO all is well\\x1b[2J\\u202e\\ud800 is unhealthy"]


def test_printable_keeps_what_can_be_read() -> None:
    assert printable("web-1 café 東京") == "web-1 café 東京"
    assert printable("a\tb\nc", keep="\n\t") == "a\tb\nc"
    assert printable("a\x9bb\u200f") == "a\\x9bb\\u200f"


# ------------------------------------------- what an older Cube stored is shown escaped

LEGACY = Task(
    "web\ud800\x1b[31m\u202e",
    "cube/echo",
    state=State.Failed,
    reason="exited\r\n2026-01-01 INFO forged\x9b",
    health_check="/health\r\nX",
)


@pytest.fixture
def legacy_manager(tmp_path: Path) -> Iterator[str]:
    """A manager whose store holds a task written before names and reasons were
    checked (stored directly, as an older Cube could have)."""
    stores = Stores.open("persistent", tmp_path / "manager")
    stores.tasks.put(str(LEGACY.id), LEGACY)
    stores.events.put("e1", TaskEvent(task=LEGACY, state=State.Running))
    stores.close()
    manager = Manager([], stores=Stores.open("persistent", tmp_path / "manager"))
    with Server(manager_app(manager)) as server:
        yield server.url
    manager.close()


def test_stored_control_characters_do_not_break_the_api(legacy_manager: str) -> None:
    tasks = requests.get(f"{legacy_manager}/tasks", timeout=10)
    assert tasks.status_code == 200
    assert tasks.json()[0]["Name"] == LEGACY.name
    assert requests.get(f"{legacy_manager}/events", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "args",
    [("status",), ("status", str(LEGACY.id)[:8]), ("events",), ("status", "--json")],
    ids=["status", "status-id", "events", "json"],
)
def test_the_cli_shows_stored_control_characters_escaped(legacy_manager: str, args) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cube", *args, "--manager", legacy_manager],
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert done.returncode == 0, done.stderr
    shown = done.stdout.decode("utf-8")
    assert "web" in shown
    for char in ("\x1b", "\r", "\x9b", "\u202e"):
        assert char not in shown
    assert not any(line.startswith("2026-01-01") for line in shown.splitlines())
