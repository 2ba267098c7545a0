"""A kernel killed in the middle of notebook 11, clean-up cell never run, leaves nothing.

Notebook 11 runs a cluster that keeps its tasks when it stops (``keep_tasks=True``) and a
scratch folder of its own, the worst case for leftovers. A real kernel runs its set-up
cells and starts three tasks, as the notebook does; then the kernel is killed with
SIGKILL, so neither the clean-up cell nor ``atexit`` runs. Within 10 s, no process of
the cluster (manager, workers, task processes) may be left, nor its folders.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import nbformat
import psutil
from jupyter_client.manager import start_new_kernel

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "11-persistence.ipynb"
ROOT = Path(__file__).parent.parent
START_TASKS = """
ids = [cluster.client.submit({"Name": f"web-{i}", "Image": IMAGE}).id for i in range(3)]
for task_id in ids:
    cluster.client.wait_for(task_id, State.Running, timeout=15)
"""
REPORT = """
import json, os
print(json.dumps({"pid": os.getpid(), "paths": [str(cluster.data_dir), str(folder)]}))
"""


def _run(client, code: str) -> str:
    out: list[str] = []

    def keep(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "error":
            raise AssertionError("\n".join(msg["content"]["traceback"]))

    client.execute_interactive(code, timeout=120, output_hook=keep)
    return "".join(out)


def _leftovers(paths: list[str]) -> list[str]:
    found = [p for p in paths if Path(p).exists()]
    for proc in psutil.process_iter(["cmdline", "status"]):
        args = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(p in args for p in paths):
            found.append(f"pid {proc.pid}: {args[:80]}")
    return found


def test_killing_the_kernel_of_notebook_11_leaves_nothing():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUBE_RUNTIME": "process"}
    env.pop("CUBE_SOLUTIONS", None)
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(NOTEBOOK.parent), env=env)
    try:
        setup = [
            c.source
            for c in nbformat.read(NOTEBOOK, as_version=4).cells
            if "setup" in c.metadata.get("tags", [])
        ]
        for source in setup:
            _run(client, source)
        _run(client, START_TASKS)
        report = json.loads(_run(client, REPORT).strip().splitlines()[-1])
    except BaseException:
        manager.shutdown_kernel(now=True)
        raise
    paths = report["paths"]
    assert len([line for line in _leftovers(paths) if line.startswith("pid")]) >= 6  # 3 + 3 tasks
    os.kill(report["pid"], signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + 10
    while (left := _leftovers(paths)) and time.monotonic() < deadline:
        time.sleep(0.2)
    client.stop_channels()
    manager.cleanup_resources()
    assert not left, f"left behind: {left}"
    print(f"nothing left {time.monotonic() - killed:.1f} s after the kill")
