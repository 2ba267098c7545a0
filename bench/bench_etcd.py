"""The etcd layer: store speed against DiskStore, and leader failover under SIGKILL.

1. ``EtcdStore`` put / get / list against a ``DiskStore`` in the same run (both durable:
   etcd syncs its log before it answers, DiskStore runs SQLite with synchronous=FULL).
2. Failover: three candidates (``tests/etcd_contender.py``, real processes, TTL 2 s)
   campaign; the leader writes fenced entries without pause. The leader is SIGKILLed
   ``--kills`` times (and started again, so three always run); measured is the time from
   the kill to the first entry written by the next leader, against the goal of twice
   the TTL. Afterwards the entries are checked: every write a candidate was told it made
   is there (0 lost), and no entry of an older epoch comes after one of a newer (0 out
   of order: two leaders never wrote at once).

Uses ``CUBE_ETCD`` when set, else starts a member of its own (Debian's etcd-server;
``scripts/etcd-up.sh`` installs it). ``python -m bench.bench_etcd [--kills 20]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import header, ms
from cube.etcd import (
    EtcdClient,
    EtcdStore,
    LocalEtcd,
    current_leader,
    etcd_binary,
    prefix_end,
    watch,
)
from cube.store import DiskStore

ROOT = Path(__file__).parent.parent
TTL = 2
N = 300


def store_speed(client: EtcdClient, prefix: str) -> None:
    header(f"EtcdStore against DiskStore, {N} values (best of 3)")
    with tempfile.TemporaryDirectory() as directory:
        stores = {"DiskStore": DiskStore(directory), "EtcdStore": EtcdStore(client, prefix)}
        best: dict[str, dict[str, float]] = {name: {} for name in stores}
        for _ in range(3):
            for name, store in stores.items():
                for op, run in (
                    (
                        "put",
                        lambda s: [
                            s.put(f"k{i:05d}", {"I": i, "Pad": "x" * 200}) for i in range(N)
                        ],
                    ),
                    ("get", lambda s: [s.get(f"k{i:05d}") for i in range(N)]),
                    ("list", lambda s: [s.list() for _ in range(10)]),
                ):
                    started = time.perf_counter()
                    run(store)
                    count = 10 if op == "list" else N
                    rate = count / (time.perf_counter() - started)
                    best[name][op] = max(best[name].get(op, 0.0), rate)
        for name, rates in best.items():
            print(
                f"{name:10s} put {rates['put']:8.0f}/s  get {rates['get']:8.0f}/s  "
                f"list of {N} {rates['list']:6.1f}/s"
            )
        for op in ("put", "get", "list"):
            print(f"  {op}: etcd at {best['EtcdStore'][op] / best['DiskStore'][op]:.2f}x DiskStore")
        stores["DiskStore"].close()
    client.delete(prefix, prefix_end(prefix))


def contender(endpoints: list[str], prefix: str, name: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests/etcd_contender.py"),
                ",".join(endpoints),
                prefix,
                name,
                str(TTL),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def events(log: Path, kind: str) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == kind:
                out.append(entry)
    return out


def failover(client: EtcdClient, prefix: str, kills: int, directory: Path) -> None:
    header(f"leader failover: {kills} SIGKILLs of the leader among 3 candidates, TTL {TTL} s")
    names = ["a0", "b0", "c0"]  # one name per process: a candidate started again is new
    procs = {n: contender(client.endpoints, prefix, n, directory / f"{n}.log") for n in names}
    times: list[float] = []
    try:
        for _ in range(kills):
            times.append(_kill_the_leader(client, prefix, procs, names, directory))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    lost, out_of_order, total = _check(client, prefix, names, directory)
    goal = 2 * TTL
    verdict = "met" if max(times) <= goal else "MISSED"
    print(
        f"kill -> next leader's first write: p50 {ms(statistics.median(times))}, "
        f"max {ms(max(times))} (goal <= {goal} s: {verdict})"
    )
    print(f"{total} fenced writes: {lost} lost, {out_of_order} out of epoch order")


def _kill_the_leader(
    client: EtcdClient,
    prefix: str,
    procs: dict[str, subprocess.Popen],
    names: list[str],
    directory: Path,
) -> float:
    """SIGKILL the leader; seconds until the next leader's first write is seen. The
    killed candidate is replaced by a new one."""
    leader = _wait(lambda: current_leader(client, f"{prefix}/leader"), 15)
    _wait(lambda: events(directory / f"{leader.name}.log", "wrote"), 15)
    seen: list[float] = []

    def written(event) -> None:
        if not event.key.startswith(f"{prefix}/log/{leader.name}/"):
            seen.append(time.monotonic())

    w = watch(client, f"{prefix}/log/", written)
    w.ready.wait(5)
    time.sleep(0.5)  # let it lead a while: a longer history to check
    os.kill(procs[leader.name].pid, signal.SIGKILL)
    killed = time.monotonic()
    procs.pop(leader.name).wait()
    try:
        _wait(lambda: seen, 10 * TTL)
    finally:
        w.close()
    again = f"{leader.name[0]}{len(names)}"
    names.append(again)
    procs[again] = contender(client.endpoints, prefix, again, directory / f"{again}.log")
    return seen[0] - killed


def _check(
    client: EtcdClient, prefix: str, names: list[str], directory: Path
) -> tuple[int, int, int]:
    found = client.range(f"{prefix}/log/", prefix_end(f"{prefix}/log/")).kvs
    entries = sorted((kv.mod_revision, json.loads(kv.value)) for kv in found)
    epochs = [e["Epoch"] for _, e in entries]
    out_of_order = sum(1 for a, b in itertools.pairwise(epochs) if b < a)
    stored = {(e["Name"], e["I"]): revision for revision, e in entries}
    lost = sum(
        1
        for name in names
        for w in events(directory / f"{name}.log", "wrote")
        if stored.get((name, w["i"])) != w["revision"]
    )
    return lost, out_of_order, len(entries)


def _wait(probe, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = probe()
        except Exception:
            result = None
        if result:
            return result
        time.sleep(0.05)
    raise TimeoutError("timed out")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_etcd")
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args(argv if argv is not None else [])
    given = os.environ.get("CUBE_ETCD")
    if not given and etcd_binary() is None:
        header("etcd: skipped (no CUBE_ETCD and no etcd installed: scripts/etcd-up.sh)")
        return
    with tempfile.TemporaryDirectory() as directory:
        cluster = None if given else LocalEtcd.on_free_ports(Path(directory) / "etcd").start()
        client = EtcdClient(given or cluster.endpoints)  # type: ignore[union-attr]
        prefix = f"/cube-bench/{uuid.uuid4().hex[:8]}"
        try:
            store_speed(client, f"{prefix}/store")
            failover(client, prefix, args.kills, Path(directory))
        finally:
            client.delete(prefix, prefix_end(prefix))
            if cluster is not None:
                cluster.remove()


if __name__ == "__main__":
    main(sys.argv[1:])
