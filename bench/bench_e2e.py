"""Submit -> Running through the manager's API, end to end, against `docker run -d`.

A LocalCluster (a manager and 3 workers, each a real process) gets bursts of 1, 20 and
100 tasks posted to its manager (8 at a time); the clock stops when the manager reports
every one of them Running. That includes placement, the post to a worker, the start,
and the manager learning of it from its next poll of the worker, which is what a user
waiting on `cube status` sees. The baseline is the `docker` CLI starting the same image
detached, the same number of times, 8 at a time, in the same run.

Run: ``python -m bench bench_e2e``. Prints numbers and ratios; asserts nothing.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.common import header, ms
from cube.cluster import LocalCluster
from cube.runtime import docker_available

BURSTS = (1, 20, 100)
SINGLE_REPEATS = 5
PARALLEL = 8
TIMEOUT = 300.0
IMAGES = {"process": "cube/echo", "docker": "cube/busybox:latest"}


def _wait_all(url: str, ids: set[str], state: int) -> None:
    """Poll the manager's task list until every one of ``ids`` is in ``state``."""
    deadline = time.monotonic() + TIMEOUT
    with requests.Session() as session:
        while time.monotonic() < deadline:
            tasks = {t["ID"]: t for t in session.get(f"{url}/tasks", timeout=30).json()}
            failed = [tasks[i]["Reason"] for i in ids if tasks[i]["State"] == 4]
            if failed:
                raise RuntimeError(f"a task failed: {failed[0]}")
            if all(tasks[i]["State"] == state for i in ids):
                return
            time.sleep(0.02)
    raise TimeoutError(f"tasks not in state {state} after {TIMEOUT:g} s")


def cube_burst(url: str, image: str, count: int) -> float:
    """Seconds from the first POST until the manager reports all ``count`` Running;
    then the tasks are stopped again."""

    def submit(i: int) -> str:
        body = {"Name": f"bench-{i}", "Image": image}
        response = requests.post(f"{url}/tasks", json=body, timeout=30)
        response.raise_for_status()
        return response.json()["ID"]

    start = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        ids = set(pool.map(submit, range(count)))
    _wait_all(url, ids, state=2)
    elapsed = time.perf_counter() - start
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda i: requests.delete(f"{url}/tasks/{i}", timeout=30), ids))
    _wait_all(url, ids, state=3)
    return elapsed


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


def measure(runner: object, *args: object) -> dict[int, float]:
    """Seconds per burst size; a burst of 1 is the median of SINGLE_REPEATS."""
    out = {}
    for count in BURSTS:
        repeats = SINGLE_REPEATS if count == 1 else 1
        out[count] = statistics.median(runner(*args, count) for _ in range(repeats))  # type: ignore[operator]
    return out


def cluster_bursts(runtime: str) -> dict[int, float]:
    with LocalCluster(workers=3, runtime=runtime) as cluster:
        return measure(cube_burst, cluster.manager.url, IMAGES[runtime])


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
    _print("process runtime (burst: time)", cluster_bursts("process"))
    ok, why = docker_available()
    if not ok:
        print(f"docker: skipped ({why})")
        return
    if _shared_owner_labels():
        print("docker: skipped (another LocalCluster's containers are on this engine)")
        return
    cube = cluster_bursts("docker")
    docker = measure(docker_burst, IMAGES["docker"])
    _print("docker runtime (burst: time)", cube)
    _print("`docker run -d` (burst: time)", docker)
    ratios = ", ".join(f"{n}: {cube[n] / docker[n]:.2f}x" for n in BURSTS)
    print(f"  ratio cube / docker run:         {ratios}")


if __name__ == "__main__":
    main()
