"""DiskStore against what it is built on, in the same run: raw diskcache with the same
settings, and a plain sqlite3 key/value table; each durable (synchronous=FULL, what
Cube's worker uses: a put is on disk when it returns) and, for the raw ones, with
synchronous=NORMAL, to show what that durability costs. Then concurrent writers that
each wait for their write to be durable, as the manager's requests do: one flush per
write (``sync="each"``) against writes flushed in groups (``sync="grouped"``, the
manager's), in the same run.

Run: ``python -m bench bench_store``. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import json
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from bench.common import header
from cube.store import DiskStore
from cube.task import Task

PUTS = 2000
GETS = 5000
LISTS = 20
ROUNDS = 3
WRITES_EACH = 100  # per writer thread, in the concurrent writers' runs
FULL, NORMAL = 2, 1


@dataclass
class Backend:
    """One way of keeping JSON text under string keys."""

    name: str
    put: Callable[[str, Any], None]
    get: Callable[[str], Any]
    listing: Callable[[], list[Any]]
    close: Callable[[], None]


def disk_store(directory: Path) -> Backend:
    store: DiskStore[Any] = DiskStore(directory)
    return Backend("DiskStore (FULL)", store.put, store.get, store.list, store.close)


def raw_diskcache(directory: Path, synchronous: int) -> Backend:
    cache = diskcache.Cache(str(directory), eviction_policy="none", sqlite_synchronous=synchronous)
    level = "FULL" if synchronous == FULL else "NORMAL"
    return Backend(
        f"diskcache ({level})",
        lambda key, value: cache.set(key, json.dumps(value)),
        lambda key: json.loads(cache[key]),
        lambda: [json.loads(cache[key]) for key in cache.iterkeys()],
        cache.close,
    )


def raw_sqlite(directory: Path, synchronous: str) -> Backend:
    db = sqlite3.connect(directory / "kv.db", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def put(key: str, value: Any) -> None:
        db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))

    def get(key: str) -> Any:
        return json.loads(db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()[0])

    def listing() -> list[Any]:
        return [json.loads(v) for (v,) in db.execute("SELECT value FROM kv")]

    return Backend(f"sqlite3 ({synchronous})", put, get, listing, db.close)


def rates(backend: Backend) -> dict[str, float]:
    """Operations per second for put, get and a full listing (items per second)."""
    values = [Task(f"t{i}", "cube/echo").to_wire() for i in range(PUTS)]
    keys = [v["ID"] for v in values]
    start = time.perf_counter()
    for key, value in zip(keys, values, strict=True):
        backend.put(key, value)
    put = PUTS / (time.perf_counter() - start)
    picks = random.Random(1).choices(keys, k=GETS)
    start = time.perf_counter()
    for key in picks:
        backend.get(key)
    get = GETS / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(LISTS):
        assert len(backend.listing()) == PUTS
    listed = LISTS * PUTS / (time.perf_counter() - start)
    backend.close()
    return {"put": put, "get": get, "list": listed}


def best_rates(makers: list[Callable[[Path], Backend]]) -> dict[str, dict[str, float]]:
    """The best of ROUNDS runs of each backend, interleaved so that a busy moment on
    the machine does not land on one backend only."""
    results: dict[str, dict[str, float]] = {}
    for _ in range(ROUNDS):
        for make in makers:
            with tempfile.TemporaryDirectory() as tmp:
                backend = make(Path(tmp))
                measured = rates(backend)
            best = results.setdefault(backend.name, measured)
            for op, rate in measured.items():
                best[op] = max(best[op], rate)
    return results


def writers(sync: str, threads: int, per_thread: int = WRITES_EACH) -> tuple[float, int]:
    """``threads`` writers, each putting a task and then waiting until it is durable (as
    the manager does before it answers), on one DiskStore: durable writes per second,
    and how many flushes they took (``sync="each"``: one per write, inside SQLite)."""
    with tempfile.TemporaryDirectory() as tmp:
        store: DiskStore[Any] = DiskStore(Path(tmp) / "s", sync=sync)
        values = [Task(f"t{i}", "cube/echo").to_wire() for i in range(threads * per_thread)]

        def write(first: int) -> None:
            for value in values[first : first + per_thread]:
                store.put(value["ID"], value)
                store.flush()

        pool = [threading.Thread(target=write, args=(i * per_thread,)) for i in range(threads)]
        start = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        rate = len(values) / (time.perf_counter() - start)
        flushes = store.commits.flushes if store.commits is not None else len(values)
        store.close()
    return rate, flushes


def main() -> None:
    header(
        f"stores: {PUTS} puts, {GETS} gets, {LISTS} listings of a task's JSON (best of {ROUNDS})"
    )
    results = best_rates(
        [
            disk_store,
            lambda d: raw_diskcache(d, FULL),
            lambda d: raw_sqlite(d, "FULL"),
            lambda d: raw_diskcache(d, NORMAL),
            lambda d: raw_sqlite(d, "NORMAL"),
        ]
    )
    print(f"{'':<20} {'put/s':>10} {'get/s':>10} {'list items/s':>14}")
    for name, r in results.items():
        print(f"{name:<20} {r['put']:>10,.0f} {r['get']:>10,.0f} {r['list']:>14,.0f}")
    ours = results["DiskStore (FULL)"]
    for other in ("diskcache (FULL)", "sqlite3 (FULL)"):
        shown = ", ".join(f"{op} {ours[op] / results[other][op]:.2f}x" for op in ours)
        print(f"DiskStore / {other}: {shown}")
    for kind in ("diskcache", "sqlite3"):
        full, normal = results[f"{kind} (FULL)"], results[f"{kind} (NORMAL)"]
        cost = normal["put"] / full["put"]
        print(f"durability cost, {kind}: puts are {cost:.1f}x faster with synchronous=NORMAL")
    print(f"durable writes from concurrent writers ({WRITES_EACH} each; best of {ROUNDS}):")
    for threads in (1, 4, 16):
        best: dict[str, tuple[float, int]] = {}
        for _ in range(ROUNDS):
            for sync in ("each", "grouped"):
                rate, flushes = writers(sync, threads)
                if rate > best.get(sync, (0.0, 0))[0]:
                    best[sync] = (rate, flushes)
        (each, _), (grouped, flushes) = best["each"], best["grouped"]
        print(
            f"  {threads:>2} writers: each flushed {each:>7,.0f}/s, grouped {grouped:>7,.0f}/s "
            f"({grouped / each:.2f}x; {threads * WRITES_EACH / flushes:.1f} writes a flush)"
        )


if __name__ == "__main__":
    main()
