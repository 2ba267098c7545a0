"""Submit -> Running on a worker, against `docker run -d` of the same image.

The worker runs in this process behind its real HTTP API; a task is submitted with a
POST and timed until the worker's store says Running (the worker's own wait, woken by
the change, so no polling interval is added). The Docker baseline is the `docker` CLI
starting the same image detached, in the same run.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import header, ms, summary
from cube.http import Server
from cube.runtime import choose, docker_available
from cube.store import JsonCodec, MemoryStore, WireCodec
from cube.task import State, Task
from cube.worker import Worker
from cube.worker.api import make_app

SINGLE_RUNS = 10
BURST = 20


def _worker(kind: str, state_dir: Path) -> Worker:
    runtime = choose(kind, owner="bench", state_dir=state_dir)
    return Worker("bench", MemoryStore(WireCodec(Task)), runtime, timers=MemoryStore(JsonCodec()))


def _submit(url: str, image: str) -> str:
    response = requests.post(f"{url}/tasks", json={"Name": "bench", "Image": image}, timeout=10)
    response.raise_for_status()
    return response.json()["ID"]


def _cube_single(worker: Worker, url: str, image: str) -> list[float]:
    times = []
    for _ in range(SINGLE_RUNS):
        start = time.perf_counter()
        task_id = _submit(url, image)
        worker.wait_for(task_id, State.Running, State.Failed, timeout=60)
        times.append(time.perf_counter() - start)
        worker.stop_task(task_id)
        worker.wait_for(task_id, State.Completed, timeout=60)
    return times


def _cube_burst(worker: Worker, url: str, image: str) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: _submit(url, image), range(BURST)))
    for task_id in ids:
        worker.wait_for(task_id, State.Running, State.Failed, timeout=120)
    elapsed = time.perf_counter() - start
    for task_id in ids:
        worker.stop_task(task_id)
    for task_id in ids:
        worker.wait_for(task_id, State.Completed, timeout=120)
    return elapsed


def _measure(kind: str, image: str) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as tmp:
        worker = _worker(kind, Path(tmp)).start()
        with Server(make_app(worker)) as server:
            single = _cube_single(worker, server.url, image)
            burst = _cube_burst(worker, server.url, image)
        worker.close()
    return single, burst


def _docker_run(image: str) -> str:
    out = subprocess.run(
        ["docker", "run", "-d", "-P", "--label", "cube.bench=1", image],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def _docker_baseline(image: str) -> tuple[list[float], float]:
    single, ids = [], []
    for _ in range(SINGLE_RUNS):
        start = time.perf_counter()
        ids.append(_docker_run(image))
        single.append(time.perf_counter() - start)
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids += list(pool.map(lambda _: _docker_run(image), range(BURST)))
    burst = time.perf_counter() - start
    subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    return single, burst


def main() -> None:
    header("worker: submit -> Running")
    single, burst = _measure("process", "cube/echo")
    print(f"process runtime, 1 task:      {summary(single)}  (goal p50 <= 100 ms)")
    print(f"process runtime, burst of {BURST}: all Running in {ms(burst)}")
    ok, why = docker_available()
    if not ok:
        print(f"docker: skipped ({why})")
        return
    image = "cube/busybox:latest"
    cube_single, cube_burst = _measure("docker", image)
    docker_single, docker_burst = _docker_baseline(image)
    ratio = statistics.median(cube_single) / statistics.median(docker_single)
    print(f"docker runtime, 1 task:       {summary(cube_single)}")
    print(f"`docker run -d`, 1 container: {summary(docker_single)}")
    print(f"  ratio cube/docker (p50):    {ratio:.2f}x  (goal <= 1.3x)")
    print(f"docker runtime, burst of {BURST}:  all Running in {ms(cube_burst)}")
    print(f"`docker run -d` x{BURST} (8 at once): {ms(docker_burst)}")
    print(f"  ratio cube/docker (burst):  {cube_burst / docker_burst:.2f}x  (goal <= 1.3x)")


if __name__ == "__main__":
    main()
