"""The `cube` command, as a user runs it, against a real `cube up` cluster."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from helpers import eventually, free_port, wait_healthy

import cube
from cube.ports import free_ports

FIXTURES = Path(__file__).parent / "fixtures"


def cube_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cube", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


class Up:
    """`cube up` in the background, as a user would leave it in a terminal."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.port, self.data_dir = port, data_dir
        self.log = data_dir.parent / f"up-{port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cube", "up", "--runtime", "process", "--workers", "2",
             "--port", str(port), "--data-dir", str(data_dir)],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        with contextlib.suppress(AssertionError):  # it may give up: the fixture retries
            wait_healthy(f"http://127.0.0.1:{port}", self.proc, timeout=30)
        self.env = {"CUBE_MANAGER": f"127.0.0.1:{port}"}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return cube_cli(*args, env=self.env)

    def ctrl_c(self) -> None:
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left behind: {alive}"


@pytest.fixture
def up(tmp_path):
    cluster = None
    for _ in range(3):  # tests running alongside may take a port between our look and cube up's
        # The manager's port and the two workers' ports after it must all be free.
        port = eventually(lambda: free_ports(3, consecutive=True)[0])
        cluster = Up(tmp_path / "cluster", port)
        started = eventually(
            lambda c=cluster: "Cube is up." in c.log.read_text() or c.proc.poll() is not None,
            timeout=60,
            what="cube up to start or give up",
        )
        if started and cluster.proc.poll() is None:
            break
    assert cluster is not None and cluster.proc.poll() is None, cluster.log.read_text()[-2000:]
    yield cluster
    if cluster.proc.poll() is None:
        cluster.ctrl_c()


def status_table(up: Up) -> list[dict[str, str]]:
    out = up.cli("status")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    starts = [header.index(col) for col in header.split()]
    cols = header.split()

    def cut(line: str) -> dict[str, str]:
        bounds = [*starts[1:], None]
        return {c: line[s:e].strip() for c, s, e in zip(cols, starts, bounds, strict=True)}

    return [cut(row) for row in rows]


def test_run_status_stop_logs_events_node(up, tmp_path):
    task_file = tmp_path / "task.json"
    raw = json.loads((FIXTURES / "book/task1.json").read_text())
    raw["Task"]["Image"] = "cube/echo"
    task_file.write_text(json.dumps(raw))

    from_file = up.cli("run", str(task_file))
    assert from_file.returncode == 0, from_file.stderr
    assert raw["Task"]["ID"] in from_file.stdout
    with_flag = up.cli("run", "-f", str(task_file))
    assert with_flag.returncode == 0  # the same event again: a retry, not a second task
    by_flags = up.cli("run", "--name", "web", "--image", "cube/echo", "--health-check", "/health")
    assert by_flags.returncode == 0, by_flags.stderr

    rows = eventually(
        lambda: (r := status_table(up)) and all(x["STATE"] == "Running" for x in r) and r,
        what="both Running in `cube status`",
    )
    assert sorted(r["NAME"] for r in rows) == ["test-chapter-9.1", "web"]
    assert all(r["CREATED"].endswith("ago") or r["CREATED"] == "just now" for r in rows)
    assert all(r["PORTS"].startswith("127.0.0.1:") and r["RESTARTS"] == "0" for r in rows)

    as_json = json.loads(up.cli("status", "--json").stdout)
    assert {t["Name"] for t in as_json} == {"test-chapter-9.1", "web"}
    web = next(t for t in as_json if t["Name"] == "web")

    logs = up.cli("logs", web["ID"][:8])
    assert logs.returncode == 0 and "listening on 127.0.0.1" in logs.stdout

    stopped = up.cli("stop", web["ID"][:8])
    assert stopped.returncode == 0 and "is being stopped" in stopped.stdout
    eventually(
        lambda: next(r for r in status_table(up) if r["NAME"] == "web")["STATE"] == "Completed"
    )

    history = json.loads(up.cli("events", "--json").stdout)
    assert [e["State"] for e in history if e["Task"]["Name"] == "web"] == [3, 2]
    assert "ASKED" in up.cli("events").stdout

    nodes = up.cli("node")
    header, *lines = nodes.stdout.splitlines()
    assert header.split()[:2] == ["NAME", "STATE"] and "MEMORY" in header
    assert len(lines) == 2 and all(" up " in line and "GiB" in line for line in lines)
    assert len(json.loads(up.cli("node", "--json").stdout)) == 2

    huge = up.cli("run", "--name", "huge", "--image", "cube/echo", "--cpu", "512", "--json")
    prefix = json.loads(huge.stdout)["ID"][:8]
    detail = up.cli("status", prefix)
    assert detail.returncode == 0, detail.stderr
    fields = dict(line.split(":", 1) for line in detail.stdout.splitlines())
    assert fields["State"].strip() == "Pending"
    reason = fields["Reason"].strip()
    assert reason.startswith("no worker can take it: 2 nodes: at most ")
    assert reason.endswith(" cores free < 512 cores asked")
    assert json.loads(up.cli("status", prefix, "--json").stdout)["Name"] == "huge"
    assert "was cancelled: it had not been placed" in up.cli("stop", prefix).stdout


def test_cube_up_resumes_on_the_same_data_dir(up):
    # `cube up` prints this once every worker answers; the manager may answer a moment before
    eventually(lambda: "Try:  cube run --name web --image cube/echo " in up.log.read_text())
    up.cli("run", "--name", "survivor", "--image", "cube/echo")
    eventually(lambda: status_table(up)[0]["STATE"] == "Running")
    up.ctrl_c()

    again = Up(up.data_dir, up.port)
    try:
        rows = eventually(
            lambda: (r := status_table(again)) and r[0]["STATE"] == "Running" and r,
            what="the task Running again",
        )
        assert [r["NAME"] for r in rows] == ["survivor"]
        assert rows[0]["RESTARTS"] == "0"
    finally:
        again.ctrl_c()


def test_errors_a_person_can_act_on(up, tmp_path):
    unreachable = cube_cli("status", "--manager", f"127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1
    assert "is `cube manager` running on 127.0.0.1:" in unreachable.stderr

    missing = up.cli("run", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr

    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "Name": "x",\n  "Image": \n}')
    invalid = up.cli("run", str(broken))
    assert invalid.returncode == 1 and "line 4, column 1" in invalid.stderr

    unknown = up.cli("stop", "ffffffff")
    assert (
        unknown.returncode == 1 and "no task has an ID starting with 'ffffffff'" in unknown.stderr
    )

    bad_field = tmp_path / "bad.json"
    bad_field.write_text(json.dumps({"Name": "x", "Image": "cube/echo", "Memory": -1}))
    rejected = up.cli("run", str(bad_field))
    assert rejected.returncode == 1 and "Task.Memory: must not be negative" in rejected.stderr

    usage = up.cli("run")
    assert usage.returncode == 2 and "give a task file" in usage.stderr


def test_token_errors(tmp_path):
    port = free_port()
    manager = subprocess.Popen(
        [sys.executable, "-m", "cube", "manager", "--port", str(port), "--dbtype", "memory",
         "--workers", f"127.0.0.1:{free_port()}"],
        env={**os.environ, "CUBE_TOKEN": "letmein"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_healthy(f"http://127.0.0.1:{port}", manager)
        env = {"CUBE_MANAGER": f"127.0.0.1:{port}", "CUBE_TOKEN": ""}
        denied = cube_cli("status", env=env)
        assert denied.returncode == 1 and "wants a token" in denied.stderr
        allowed = cube_cli("status", "--json", env={**env, "CUBE_TOKEN": "letmein"})
        assert allowed.returncode == 0 and json.loads(allowed.stdout) == []
    finally:
        manager.terminate()
        manager.wait(timeout=30)


def test_version_and_help_with_examples():
    version = cube_cli("--version")
    assert version.returncode == 0 and cube.__version__ in version.stdout
    for command in ("worker", "manager", "run", "stop", "status", "node", "logs", "events", "up"):
        helped = cube_cli(command, "--help")
        assert helped.returncode == 0, command
        assert "Example" in helped.stdout, command
    assert cube_cli("bogus").returncode == 2


@pytest.mark.docker
def test_cube_up_suggests_an_image_its_runtime_can_run():
    from cube.cluster import LocalCluster

    cluster = LocalCluster(workers=1, runtime="docker")
    try:
        assert cluster.image == "cube/busybox:latest"  # not cube/echo, which Docker lacks
    finally:
        cluster.stop()
    assert not cluster.data_dir.exists()


def test_status_watch_and_events_follow_show_changes_as_they_happen(up, tmp_path):
    def follow(*args: str) -> tuple[subprocess.Popen, Path]:
        out = tmp_path / f"{args[0]}.out"
        proc = subprocess.Popen(
            [sys.executable, "-m", "cube", *args],
            stdout=out.open("w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **up.env},
        )
        return proc, out

    watching, table = follow("status", "--watch")
    following, history = follow("events", "--follow")
    try:
        eventually(lambda: "Ctrl-C to stop" in table.read_text(), what="a first table")
        up.cli("run", "--name", "watched", "--image", "cube/echo")
        eventually(lambda: "watched" in table.read_text(), what="the new task in the table")
        eventually(
            lambda: "Running" in table.read_text().rsplit("Ctrl-C to stop", 1)[-1],
            what="the table redrawn with the task Running",
        )
        eventually(lambda: "watched  run" in history.read_text(), what="its event followed")
    finally:
        for proc in (watching, following):
            proc.send_signal(signal.SIGINT)
    assert watching.wait(timeout=10) == 0 and following.wait(timeout=10) == 0
    assert "Traceback" not in table.read_text() + history.read_text()


def test_a_manager_on_etcd_says_what_is_wrong_with_its_store():
    workers = ("--workers", f"127.0.0.1:{free_port()}", "--port", str(free_port()))
    wrong = cube_cli("manager", *workers, "--store", "http://127.0.0.1:2379")
    assert wrong.returncode == 2 and "etcd://HOST:PORT" in wrong.stderr
    nobody = cube_cli("manager", *workers, "--store", f"etcd://127.0.0.1:{free_port()}")
    assert nobody.returncode == 1 and "cannot use the etcd at etcd://127.0.0.1:" in nobody.stderr
    several = cube_cli("up", "--managers", "2", "--store", "memory")
    assert several.returncode == 2 and "--store" in several.stderr
