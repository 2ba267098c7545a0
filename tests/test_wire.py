"""The wire machinery: one declaration gives checks, Go's JSON and schemas; reading is
lenient where stored data needs it and submissions are strict; encodings are reused."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Annotated

import bottle
import pytest

from cube.fields import Text
from cube.http import ListCache
from cube.messages import Stats
from cube.node import Node
from cube.openapi import Doc, document
from cube.task import State, Task, TaskEvent, ValidationError, parse_submission
from cube.wire import OURS, decode, decode_json, encode, strict_variant
from cube.worker.stats import Snapshot

FIXTURES = Path(__file__).parent / "fixtures"


class Labelled(Task):
    """Task with one more field: the one line it takes to add one."""

    label: Annotated[Text, OURS] = ""


def test_adding_a_field_is_one_line() -> None:
    plain = Labelled("web", "cube/echo")
    assert "Label" not in plain.to_wire()  # ours, and unset: a Go Cube never sees it
    wire = Labelled("web", "cube/echo", label="blue").to_wire()
    assert list(wire)[-1] == "Label" and wire["Label"] == "blue"
    assert Labelled.from_wire(wire).label == "blue"
    assert Labelled.from_wire({"name": "web", "image": "cube/echo", "LABEL": "x"}).label == "x"
    strict = strict_variant(Labelled, "LabelledSpec")
    with pytest.raises(ValidationError, match=r"Labelled\.Label: must not contain a control"):
        decode(strict, {"Name": "web", "Image": "cube/echo", "Label": "a\nb"}, "Labelled")
    app = bottle.Bottle()
    app.route("/x", "GET", lambda: "", doc=Doc("get one", Labelled))
    schema = document(app)["components"]["schemas"]["Labelled"]
    assert schema["properties"]["Label"]["maxLength"] == 256
    assert "Label" not in schema["required"] and "ContainerID" in schema["required"]


def test_tasks_are_built_with_name_and_image_first() -> None:
    task = Task("web", "cube/echo", cpu=0.5)
    assert (task.name, task.image, task.cpu, task.state) == ("web", "cube/echo", 0.5, State.Pending)
    assert list(task.to_wire())[:3] == ["ID", "ContainerID", "Name"]  # Go's order
    assert TaskEvent(task, State.Completed).state is State.Completed
    with pytest.raises(TypeError):
        Task("web", "cube/echo", "extra")
    moved = task.replace(worker="w1")
    assert moved.worker == "w1" and task.worker == "" and moved.id == task.id


def test_what_an_older_cube_stored_is_read_but_not_accepted_anew() -> None:
    stored = Task("my web", "cube/echo", health_check="/a b").to_wire()
    assert Task.from_wire(stored).name == "my web"
    with pytest.raises(ValidationError) as info:
        parse_submission(stored)
    assert info.value.field == "Task.Name"


def test_stored_text_decodes_in_one_pass_or_by_the_slow_road() -> None:
    task = Task("web", "cube/echo", state=State.Running, exposed_ports=("80/tcp",))
    text = json.dumps(task.to_wire())
    assert decode_json(Task, text, "Task") == task
    shouty = text.replace('"Name"', '"NAME"')
    assert decode_json(Task, shouty, "Task") == task
    odd = json.dumps({**task.to_wire(), "Name": "web\ud800"})  # only an old store has this
    assert decode_json(Task, odd, "Task").name == "web\ud800"
    assert b"\\ud800" in encode(decode_json(Task, odd, "Task"))  # escaped, not an error
    with pytest.raises(ValidationError, match="malformed JSON"):
        decode_json(Task, "{", "Task")


def test_a_list_reuses_the_json_of_unchanged_tasks() -> None:
    cache = ListCache(key=lambda task: task.id)
    tasks = [Task(f"t{i}", "cube/echo") for i in range(3)]
    first = cache.encode(tasks)
    assert json.loads(first) == [t.to_wire() for t in tasks]
    known = dict(cache._known)
    tasks[1] = tasks[1].replace(state=State.Scheduled)
    tasks[2].reason = "assigned in place"
    second = cache.encode(tasks)
    assert json.loads(second) == [t.to_wire() for t in tasks]
    assert cache._known[tasks[0].id][1] is known[tasks[0].id][1]  # reused as is
    assert cache._known[tasks[1].id][1] is not known[tasks[1].id][1]
    assert cache._known[tasks[2].id][1] is not known[tasks[2].id][1]
    cache.encode(tasks[:1])
    assert set(cache._known) == {tasks[0].id}


def test_the_go_samples_are_read() -> None:
    stats = json.loads((FIXTURES / "gocube" / "worker_stats.json").read_text())
    assert Stats.from_wire(stats).mem_stats.mem_total == stats["MemStats"]["mem_total"]
    node = Node.from_wire(json.loads((FIXTURES / "gocube" / "manager_nodes.json").read_text())[0])
    assert node.memory == 24684084 * 1024 and node.disk == 270553174016
    assert Node.from_wire(node.to_wire()) == node


def test_a_snapshot_is_refreshed_in_the_background() -> None:
    calls: list[float] = []
    release = threading.Event()

    def slow() -> int:
        calls.append(time.monotonic())
        if len(calls) > 1:
            release.wait(5)
        return len(calls)

    snapshot = Snapshot(slow, max_age=0.05)
    assert snapshot.get() == 1  # only the first caller waits
    time.sleep(0.1)
    start = time.monotonic()
    assert snapshot.get() == 1  # stale: answered at once, a refresh started
    assert snapshot.get() == 1
    assert time.monotonic() - start < 0.5
    release.set()
    deadline = time.monotonic() + 5
    while snapshot.get() != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert snapshot.get() == 2 and len(calls) == 2  # one refresh, not one per caller
