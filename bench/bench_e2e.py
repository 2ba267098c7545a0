"""Submit -> Running through the manager's API, end to end, against `docker run -d`.

A LocalCluster (a manager and 3 workers, each a real process) gets bursts of 1, 20 and
100 tasks posted to its manager (8 at a time); the clock stops when the manager reports
every one of them Running. That includes placement, the post to a worker, the start,
and the manager learning of it from its watch of the worker, which is what a user
waiting on `cube status --watch` sees. The baselines, in the same run: for the process
runtime, the same echo services spawned directly and waited on until they listen (the
floor on this machine), and for Docker, the `docker` CLI starting the same image
detached; the same number of times, 8 at a time.

Run: ``python -m bench bench_e2e``. Prints numbers and ratios; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.common import header, ms
from cube.cluster import LocalCluster
from cube.runtime import docker_available
from cube.runtime.process import ECHO_SCRIPT

BURSTS = (1, 20, 100)
SINGLE_REPEATS = 5
PARALLEL = 8
TIMEOUT = 300.0
IMAGES = {"process": "cube/echo", "docker": "cube/busybox:latest"}


class Watch:
    """Watches the manager's task list with blocking queries (an answer the moment
    anything changes) and notes when each task was first seen in each state."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[tuple[str, int], float] = {}
        self.tasks: dict[str, dict] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._index = 0
        self._look()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _look(self, session: requests.Session | None = None) -> None:
        params = {"index": self._index, "wait": "2s"} if self._index else None
        response = (session or requests).get(f"{self.url}/tasks", params=params, timeout=30)
        now = time.perf_counter()
        self._index = int(response.headers["X-Cube-Index"])
        with self.changed:
            for task in response.json():
                self.tasks[task["ID"]] = task
                self.seen.setdefault((task["ID"], task["State"]), now)
            self.changed.notify_all()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                self._look(session)

    def wait_all(self, ids: set[str], state: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        with self.changed:
            while not all((i, state) in self.seen for i in ids):
                known = [self.tasks[i] for i in ids if i in self.tasks]
                failed = [t["Reason"] for t in known if t["State"] == 4]
                if failed:
                    raise RuntimeError(f"a task failed: {failed[0]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"tasks not in state {state} after {TIMEOUT:g} s")
                self.changed.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def cube_burst(url: str, image: str, count: int) -> tuple[float, list[float]]:
    """Seconds from the first POST until the manager reports all ``count`` Running, and
    each task's own latency (its POST to its being reported Running); then the tasks
    are stopped again."""
    watch = Watch(url)
    posted: dict[str, float] = {}

    def submit(i: int) -> str:
        body = {"Name": f"bench-{i}", "Image": image}
        began = time.perf_counter()
        response = requests.post(f"{url}/tasks", json=body, timeout=30)
        response.raise_for_status()
        posted[response.json()["ID"]] = began
        return response.json()["ID"]

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(PARALLEL) as pool:
            ids = set(pool.map(submit, range(count)))
        watch.wait_all(ids, state=2)
        elapsed = max(watch.seen[(i, 2)] for i in ids) - start
        latencies = [watch.seen[(i, 2)] - posted[i] for i in ids]
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(lambda i: requests.delete(f"{url}/tasks/{i}", timeout=30), ids))
        watch.wait_all(ids, state=3)
    finally:
        watch.close()
    return elapsed, latencies


def docker_burst(image: str, count: int) -> float:
    """Seconds for ``count`` `docker run -d` of ``image``, 8 at a time; removed after."""

    def run(_: int) -> str:
        command = ["docker", "run", "-d", "-P", "--label", "cube.bench=1", image]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    start = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        ids = list(pool.map(run, range(count)))
    elapsed = time.perf_counter() - start
    subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    return elapsed


def spawn_burst(count: int) -> float:
    """The floor: seconds for ``count`` echo services spawned directly, as the process
    runtime spawns them (same command, 8 at a time) and waited on until each listens
    (its ready line); ended after."""
    with tempfile.TemporaryDirectory() as tmp:

        def spawn(i: int) -> subprocess.Popen[bytes]:
            read_fd, write_fd = os.pipe()
            command = [sys.executable, "-I", "-S", ECHO_SCRIPT, "--host", "127.0.0.1"]
            command += ["--port", "0", "--ready-fd", str(write_fd)]
            command += ["--exit-file", f"{tmp}/{i}.exit"]
            child = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                pass_fds=(write_fd,), start_new_session=True,
            )  # fmt: skip
            os.close(write_fd)
            with open(read_fd, "rb", buffering=0) as ready:
                ready.readline()
            return child

        start = time.perf_counter()
        with ThreadPoolExecutor(PARALLEL) as pool:
            children = list(pool.map(spawn, range(count)))
        elapsed = time.perf_counter() - start
        for child in children:
            child.terminate()
        for child in children:
            child.wait()
    return elapsed


def measure(runner: object, *args: object) -> dict[int, float]:
    """Seconds per burst size; a burst of 1 is the median of SINGLE_REPEATS."""
    out = {}
    for count in BURSTS:
        repeats = SINGLE_REPEATS if count == 1 else 1
        out[count] = statistics.median(runner(*args, count) for _ in range(repeats))  # type: ignore[operator]
    return out


def cluster_bursts(runtime: str) -> tuple[dict[int, float], dict[int, float]]:
    """Per burst size: the time until all are Running, and the median task latency."""
    totals, p50s = {}, {}
    with LocalCluster(workers=3, runtime=runtime) as cluster:
        for count in BURSTS:
            runs = [cube_burst(cluster.manager.url, IMAGES[runtime], count)]
            runs += [cube_burst(cluster.manager.url, IMAGES[runtime], count)
                     for _ in range(SINGLE_REPEATS - 1 if count == 1 else 0)]  # fmt: skip
            totals[count] = statistics.median(total for total, _ in runs)
            p50s[count] = statistics.median(lat for _, latencies in runs for lat in latencies)
    return totals, p50s


def _shared_owner_labels() -> bool:
    """Does another LocalCluster run containers on this engine? Its workers have the
    same names as ours (worker-1..3), so each would adopt or stop the other's."""
    for i in range(1, 4):
        command = ["docker", "ps", "-aq", "--filter", f"label=cube.owner=worker-{i}"]
        if subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip():
            return True
    return False


def _print(label: str, results: dict[int, float]) -> None:
    shown = ", ".join(f"{n}: {ms(s)}" for n, s in results.items())
    print(f"{label:<34} {shown}")


def main() -> None:
    header("end to end: POST to the manager -> manager reports Running (LocalCluster, 3 workers)")
    totals, p50s = cluster_bursts("process")
    floor = measure(spawn_burst)
    _print("process runtime (burst: all Running)", totals)
    _print("process runtime (burst: task p50)", p50s)
    _print("the same services spawned directly", floor)
    ratios = ", ".join(f"{n}: {totals[n] / floor[n]:.2f}x" for n in BURSTS)
    print(f"  ratio cube / spawned directly:   {ratios}")
    ok, why = docker_available()
    if not ok:
        print(f"docker: skipped ({why})")
        return
    if _shared_owner_labels():
        print("docker: skipped (another LocalCluster's containers are on this engine)")
        return
    cube, cube_p50 = cluster_bursts("docker")
    docker = measure(docker_burst, IMAGES["docker"])
    _print("docker runtime (burst: all Running)", cube)
    _print("docker runtime (burst: task p50)", cube_p50)
    _print("`docker run -d` (burst: time)", docker)
    ratios = ", ".join(f"{n}: {cube[n] / docker[n]:.2f}x" for n in BURSTS)
    print(f"  ratio cube / docker run:         {ratios}")


if __name__ == "__main__":
    main()
