"""Group commit: writes flushed to the disk in groups, and nothing told before its flush.

A power cut cannot be made here, so what a flush buys is shown by the simulator (whose
manager disk loses unflushed writes when its machine loses power, see test_replay.py's
planted "never flushed"). These tests show the rest: who waits for which flush, that a
flush serves every write before it, and that the manager answers only once flushed.
"""

from __future__ import annotations

import threading
from dataclasses import fields

import pytest
import requests

from cube.groupcommit import GroupCommit
from cube.http import Server
from cube.manager.api import make_app
from cube.manager.manager import Manager
from cube.manager.stores import MADE_AGAIN, Stores
from cube.store import DiskStore
from cube.task import Task, TaskEvent

NAMES = [f.name for f in fields(Stores) if f.name != "etcd"]


class HeldFlush:
    """A flush that records each call and, while ``held`` is clear, waits: to hold a
    flush under way while others write. (It stands in for ``fsync``, whose timing no
    test can steer.)"""

    def __init__(self) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.held = threading.Event()
        self.held.set()

    def __call__(self) -> None:
        self.calls += 1
        self.started.set()
        self.held.wait(timeout=60)


def test_a_wait_with_nothing_written_flushes_nothing():
    flush = HeldFlush()
    commits = GroupCommit(flush)
    commits.wait()
    assert flush.calls == 0 and commits.pending == 0


def test_writes_made_during_a_flush_wait_for_the_next_one_and_share_it():
    flush = HeldFlush()
    commits = GroupCommit(flush)
    commits.wrote()
    flush.held.clear()
    first = threading.Thread(target=commits.wait)
    first.start()
    assert flush.started.wait(timeout=60)  # the first flush is under way, held
    for _ in range(5):
        commits.wrote()  # after it began: it does not cover them
    flush.held.set()
    first.join(timeout=60)
    assert not first.is_alive()
    assert commits.pending == 5 and flush.calls == 1
    commits.wait()  # one flush for the five
    assert commits.pending == 0 and flush.calls == 2 == commits.flushes


def test_a_failed_flush_promises_nothing_and_the_next_wait_tries_again():
    calls = []

    def flush() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")

    commits = GroupCommit(flush)
    commits.wrote()
    with pytest.raises(OSError):
        commits.wait()
    assert commits.pending == 1
    commits.wait()
    assert commits.pending == 0 and len(calls) == 2


def test_every_waiter_returns_after_a_flush_that_began_after_its_write(tmp_path):
    """Eight threads write and wait at once on a real disk store: each returns only once
    a flush that began after its write has ended, and all writes read back."""
    store = DiskStore(tmp_path / "s", sync="grouped")
    events: list[tuple[str, int]] = []  # ("began" | "ended", flush number), in order
    lock = threading.Lock()
    real = store.commits._flush

    def recorded() -> None:
        with lock:
            number = sum(kind == "began" for kind, _ in events)
            events.append(("began", number))
        real()
        with lock:
            events.append(("ended", number))

    store.commits._flush = recorded
    late: list[str] = []

    def writer(w: int) -> None:
        for i in range(25):
            with lock:
                after = len(events)  # a flush that covers the write begins after this
            store.put(f"{w}-{i}", i)
            store.flush()
            with lock:
                covered = any(
                    kind == "ended" and ("began", n) in events[after:] for kind, n in events[after:]
                )
            if not covered:
                late.append(f"{w}-{i}")

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert late == []
    assert store.commits.pending == 0 and store.commits.flushes <= 200
    store.close()
    again = DiskStore(tmp_path / "s")
    assert sorted(again.keys()) == sorted(f"{w}-{i}" for w in range(8) for i in range(25))
    again.close()


def test_only_grouped_disk_stores_count_their_writes(tmp_path):
    each = DiskStore(tmp_path / "each")
    never = DiskStore(tmp_path / "never", sync="never")
    grouped = DiskStore(tmp_path / "grouped", sync="grouped")
    assert each.commits is None and never.commits is None
    grouped.put("a", 1)
    grouped.delete("a")
    assert grouped.commits is not None and grouped.commits.pending == 2
    grouped.flush()
    assert grouped.commits.pending == 0
    with pytest.raises(ValueError, match="sync must be one of"):
        DiskStore(tmp_path / "x", sync="sometimes")
    for store in (each, never, grouped):
        store.close()


def test_a_managers_disk_stores_are_grouped_but_the_made_again_ones(tmp_path):
    stores = Stores.open("persistent", tmp_path)
    try:
        for name, store in zip(NAMES, stores.all(), strict=True):
            assert isinstance(store, DiskStore)
            assert (store.commits is None) == (name in MADE_AGAIN), name
    finally:
        stores.close()


def test_the_manager_answers_a_submission_only_once_its_writes_are_flushed(tmp_path):
    """A manager on disk, its control loop not started (nothing writes after the
    answer): what the submission wrote (its event, its task) is flushed by the time its
    201 comes, and so is a stop's."""
    stores = Stores.open("persistent", tmp_path)
    manager = Manager([], "roundrobin", stores)
    grouped = [s for s in stores.all() if isinstance(s, DiskStore) and s.commits is not None]
    try:
        with Server(make_app(manager)) as server:
            event = TaskEvent(task=Task("web", "cube/echo"))
            answer = requests.post(f"{server.url}/tasks", json=event.to_wire(), timeout=30)
            assert answer.status_code == 201, answer.text
            assert [s.commits.pending for s in grouped] == [0] * len(grouped)
            assert stores.tasks.commits.flushes >= 1 and stores.events.commits.flushes >= 1
            answer = requests.delete(f"{server.url}/tasks/{event.task.id}", timeout=30)
            assert answer.status_code == 204, answer.text
            assert [s.commits.pending for s in grouped] == [0] * len(grouped)
    finally:
        manager.close()
