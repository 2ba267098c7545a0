"""Stores: the mapping protocol, persistence across real processes, no eviction."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import diskcache
import pytest

from cube.store import DiskStore, JsonCodec, MemoryStore, StoreError, WireCodec, open_store
from cube.task import State, Task, TaskEvent

TASKS = WireCodec(Task)


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path):
    s = MemoryStore(TASKS) if request.param == "memory" else DiskStore(tmp_path / "s", TASKS)
    yield s
    s.close()


def test_put_get_list_count_delete(store):
    a, b = Task("a", "cube/echo"), Task("b", "cube/echo", state=State.Running)
    store.put(str(a.id), a)
    store[str(b.id)] = b
    assert store.get(str(a.id)) == a
    assert store[str(b.id)].state is State.Running
    assert sorted(t.name for t in store.list()) == ["a", "b"]
    assert store.count() == len(store) == 2
    assert str(a.id) in store and "nope" not in store and 42 not in store
    assert sorted(store) == sorted([str(a.id), str(b.id)])
    store.delete(str(a.id))
    del store[str(b.id)]
    assert store.count() == 0 and store.list() == []
    with pytest.raises(KeyError):
        store.get(str(a.id))
    with pytest.raises(KeyError):
        store.delete(str(a.id))


def test_values_are_copies_not_shared_objects(store):
    task = Task("a", "cube/echo")
    store.put("k", task)
    task.state = State.Failed
    got = store.get("k")
    got.name = "changed"
    assert store.get("k").state is State.Pending and store.get("k").name == "a"


def test_wrong_type_is_refused(store):
    with pytest.raises(TypeError, match="holds Task, not dict"):
        store.put("k", {"Name": "a"})


def test_disk_store_holds_json_not_pickles(tmp_path):
    store = DiskStore(tmp_path / "s", TASKS)
    task = Task("a", "cube/echo")
    store.put(str(task.id), task)
    store.close()
    with sqlite3.connect(tmp_path / "s" / "cache.db") as db:
        (value,) = db.execute("SELECT value FROM Cache WHERE key = ?", (str(task.id),)).fetchone()
    assert json.loads(value) == task.to_wire()


def test_corrupt_and_foreign_values_are_named_and_do_not_hide_others(tmp_path, caplog):
    store = DiskStore(tmp_path / "s", TASKS)
    good = Task("good", "cube/echo")
    store.put(str(good.id), good)
    raw = diskcache.Cache(str(tmp_path / "s"))
    raw.set("broken", "{not json")
    raw.set("foreign", {"a pickled": "dict"})
    raw.set("wrong-shape", json.dumps({"Name": "x"}))
    raw.close()

    for key, why in [
        ("broken", "unreadable value"),
        ("foreign", "refusing to unpickle"),
        ("wrong-shape", "Task.Image"),
    ]:
        with pytest.raises(StoreError, match=why) as info:
            store.get(key)
        assert repr(key) in str(info.value)

    assert store.list() == [good]  # the others are set aside, not dropped
    aside = store.unreadable()
    assert set(aside) == {"broken", "foreign", "wrong-shape"}
    assert "Task.Image" in aside["wrong-shape"] and "unpickle" in aside["foreign"]
    for key in aside:
        assert key in caplog.text
    assert store.count() == 2  # the text ones moved out; a pickle stays where it was
    store.close()
    again = DiskStore(tmp_path / "s", TASKS)  # what was set aside is still there, with its text
    assert set(again.unreadable()) == {"broken", "foreign", "wrong-shape"}
    assert again._aside_items()[0][1]["Raw"] in ("{not json", json.dumps({"Name": "x"}), None)
    assert again.list() == [good]


def test_no_eviction_at_a_tiny_size_limit(tmp_path):
    store = DiskStore(tmp_path / "s", JsonCodec())
    store._cache.reset("size_limit", 4096)
    for i in range(500):
        store.put(f"k{i}", {"payload": "x" * 200, "i": i})
    store._cache.cull()
    assert store.count() == 500
    assert store.get("k0") == {"payload": "x" * 200, "i": 0}


def test_open_store_kinds(tmp_path):
    assert isinstance(open_store("memory", None, TASKS), MemoryStore)
    assert isinstance(open_store("persistent", tmp_path, TASKS), DiskStore)
    with pytest.raises(ValueError, match="unknown store kind 'bolt'"):
        open_store("bolt", tmp_path, TASKS)


WRITER = textwrap.dedent(
    """
    import sys
    from cube.store import DiskStore, WireCodec
    from cube.task import Task, TaskEvent
    store = DiskStore(sys.argv[1], WireCodec(TaskEvent))
    for i in range(50):
        event = TaskEvent(task=Task(f"t{i}", "cube/echo"))
        store.put(str(event.id), event)
    print(store.count(), flush=True)
    """
)


def test_disk_store_survives_a_real_process_restart(tmp_path):
    path = str(tmp_path / "events")
    out = subprocess.run(
        [sys.executable, "-c", WRITER, path], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "50"
    store = DiskStore(path, WireCodec(TaskEvent))
    names = sorted(e.task.name for e in store.list())
    assert names == sorted(f"t{i}" for i in range(50))


def test_writes_acknowledged_before_sigkill_are_kept(tmp_path):
    """A writer prints each key after put() returns; we SIGKILL it mid-stream."""
    path = str(tmp_path / "s")
    code = textwrap.dedent(
        """
        import sys
        from cube.store import DiskStore
        store = DiskStore(sys.argv[1])
        i = 0
        while True:
            store.put(f"k{i}", i)
            print(i, flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True)
    acked = [int(proc.stdout.readline()) for _ in range(200)]
    os.kill(proc.pid, 9)
    proc.wait()
    store = DiskStore(path)
    assert all(store.get(f"k{i}") == i for i in acked)
