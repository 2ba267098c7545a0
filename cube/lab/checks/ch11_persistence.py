"""Chapter 11: a store on disk, written by the learner, that neither a crash nor a power
cut can corrupt or roll back.

``FolderStore(folder)`` keeps text values under keys, one file each: ``put``, ``get``
(KeyError when absent) and ``keys``. The checker tries the basics, including a second
instance on the same folder (a restarted process). Then it records the file operations
of one ``put`` (:mod:`cube.lab.powercut`: however the code opens and writes) and
replays them against a model of the page cache: the power goes out after each
operation, and only what was fsynced survives (a file's content by ``fsync`` on it, a
rename by ``fsync`` on the folder); the process dies before each operation and in the
middle of each file's writes, and the page cache survives. Each state is opened by a
fresh store: it must read the old value or the new one, never a torn or empty one, once
``put`` returned the new one, and list no stray keys. The verdict names the mistake
behind the first failure (no fsync, no flush before it, the folder never synced, a
file written in place). Last, the store goes live: a real worker in this kernel keeps
its tasks in it, runs two, and is restarted on a fresh instance of the store: it must
find both tasks in the store and re-adopt their processes (same IDs, no restart).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cube.lab.checks.core import Check, quiet_logs
from cube.lab.live import notebook_worker
from cube.lab.powercut import Recording, aftermaths, record, restore
from cube.lab.scratch import remove_scratch, scratch_dir
from cube.lab.verdict import Verdict
from cube.lab.watch import Watch, of_worker
from cube.store import Store, WireCodec
from cube.task import State, Task, TaskEvent

HINTS = (
    (
        "a write reaches the kernel's page cache, not the disk: what makes a file's content "
        "durable, and what makes a rename durable?"
    ),
    (
        "write a temporary file, flush and os.fsync it, os.replace it onto the name (atomic),"
        " then fsync the folder so the rename survives; keys() skips the temporary files"
    ),
    (
        "write the new value to a temporary file first, then os.replace it onto the real "
        "name: a rename is atomic, so a crash leaves either the old file or the new one; "
        "and make keys() skip the temporary files"
    ),
)
OLD = json.dumps({"Name": "web", "State": 1})
NEW = json.dumps({"Name": "web", "State": 2, "Reason": "x" * 4000})
LANE = "worker (restarted halfway)"


class LearnerStore(Store[Any]):
    """A Cube store on top of the learner's ``put``/``get``/``keys``."""

    def __init__(self, inner: Any, codec: Any) -> None:
        self.inner, self.codec, self.name = inner, codec, f"your store in {inner.folder}"
        self.aside: dict[str, dict[str, Any]] = {}

    def _raw_put(self, key: str, text: str) -> None:
        self.inner.put(key, text)

    def _raw_get(self, key: str) -> str:
        return self.inner.get(key)

    def _raw_delete(self, key: str) -> None:
        raise KeyError(key)  # not part of the exercise; the worker's task store never deletes

    def _raw_keys(self) -> list[str]:
        return list(self.inner.keys())

    def _raw_contains(self, key: str) -> bool:
        return key in self._raw_keys()

    def _aside_put(self, key: str, entry: dict[str, Any]) -> None:
        self.aside[key] = entry  # unreadable records, kept in memory for the check

    def _aside_items(self) -> list[tuple[str, dict[str, Any]]]:
        return list(self.aside.items())


def check_folder_store(store_class: Callable[[Path], Any]) -> Verdict:
    """The basics, a power cut at every step of a put, then a worker's restart."""
    check = Check(
        "11 · a store that survives a crash", HINTS, "a worker keeping its tasks in your store"
    )
    folder = scratch_dir("cube-nb11-check-")
    try:
        with check:
            check.say("trying put, get and keys")
            _basics(check, store_class, folder / "basics")
            _power_cuts(check, store_class, folder / "cuts")
            if not check.problems:
                check.say("a worker keeps its tasks in your store, and restarts")
                with quiet_logs():
                    _live(check, store_class, folder / "worker")
    finally:
        remove_scratch(folder)
    return check.verdict("no crash in the middle of a put could corrupt your store")


def _basics(check: Check, store_class: Callable[[Path], Any], folder: Path) -> None:
    store = check.call(store_class, "FolderStore(folder)", folder)
    check.call(store.put, "put(key, text)", "a", OLD)
    check.call(store.put, "put(key, text)", "b", "second")
    if (got := check.call(store.get, "get(key)", "a")) != OLD:
        check.fail(f"get('a') after put('a', text) returned {str(got)[:40]!r}, not the text")
    check.call(store.put, "put(key, text)", "a", NEW)
    if check.call(store.get, "get(key)", "a") != NEW:
        check.fail("after a second put('a', ...), get('a') did not return the new text")
    try:
        store.get("missing")
    except KeyError:
        pass
    except NotImplementedError:
        raise
    except Exception as exc:
        check.fail(
            f"get of a key never put raised {type(exc).__name__}, not KeyError: the "
            "worker (and every Cube store user) relies on KeyError"
        )
    else:
        check.fail("get of a key never put returned something instead of raising KeyError")
    again = check.call(store_class, "FolderStore(folder)", folder)
    keys = sorted(check.call(again.keys, "keys()"))
    if keys != ["a", "b"]:
        check.fail(f"a fresh store on the same folder lists {keys}, not ['a', 'b']")
    elif again.get("a") != NEW:
        check.fail("a fresh store on the same folder does not read the latest value of 'a'")


def _power_cuts(check: Check, store_class: Callable[[Path], Any], folder: Path) -> None:
    """Record one put, then open every state a crash during it could leave."""
    if check.problems:
        return
    here = folder / "recorded"
    store = store_class(here)
    store.put("a", OLD)
    store.put("b", "second")
    recording = check.call(record, "put(key, text)", here, lambda: store.put("a", NEW))
    steps = ", ".join(op.describe() for op in recording.ops) or "none"
    check.note(f"a put's file operations: {steps}; the power was cut after each")
    for n, state in enumerate(aftermaths(recording)):
        restore(state.files, folder / f"after-{n}")
        problem = _after_cut(store_class, folder / f"after-{n}", state.finished)
        if problem:
            mistake = _diagnose(recording, problem)
            check.fail(
                f"{state.story}: {problem}" + (f". The mistake: {mistake}" if mistake else "")
            )
            return


def _after_cut(store_class: Callable[[Path], Any], folder: Path, finished: bool) -> str:
    """What is wrong with the folder a crash left, read by a fresh store ("": nothing)."""
    store = store_class(folder)
    try:
        keys = sorted(store.keys())
    except Exception as exc:
        return f"keys() then raised {type(exc).__name__}: {exc}"
    if keys != ["a", "b"]:
        return f"keys() then listed {keys}, not ['a', 'b']"
    try:
        text = store.get("a")
    except KeyError:
        return "get('a') then raised KeyError: the old value was lost before the new one was safe"
    except Exception as exc:
        return f"get('a') then raised {type(exc).__name__}"
    if text == "":
        return "get('a') then returned an empty value"
    if text not in (OLD, NEW):
        return (
            f"get('a') then returned {len(text)} characters, neither the old value nor "
            "the new: a torn write"
        )
    if finished and text != NEW:
        return "get('a') then read the old value: a put that returned was lost"
    return ""


def _diagnose(recording: Recording, problem: str) -> str:
    """The mistake behind ``problem``, named from what the put did."""
    synced = {op.name for op in recording.ops if op.kind == "fsync"}
    renamed = [op for op in recording.ops if op.kind == "rename"]
    if "listed" in problem:
        return "keys() must list only the values' files: skip the temporary ones"
    if not recording.did("fsync") and not recording.did("sync"):
        if not renamed:
            return (
                "put writes the value's file in place and never calls os.fsync: opening "
                "it for writing empties it at once, and what is written stays in the "
                "kernel's page cache, which a power cut empties"
            )
        return (
            "put never calls os.fsync: the new file and the rename stay in the kernel's "
            "page cache, which a power cut empties"
        )
    if renamed and not any(op.name in synced for op in renamed):
        return (
            f"the temporary file {renamed[0].name} was renamed into place before its "
            "content was fsynced: flush and os.fsync it first"
        )
    if any(op.kind == "fsync" and op.content != NEW.encode() for op in recording.ops):
        return (
            "os.fsync ran before the text reached the kernel: call f.flush() first (or "
            "fsync after the file is written)"
        )
    if renamed and not recording.did("fsync-dir") and not recording.did("sync"):
        return (
            "the rename is an entry in the folder, and the folder was never fsynced: "
            "after os.replace, open the folder (os.open(folder, os.O_RDONLY)), os.fsync "
            "it and close it"
        )
    if not renamed:
        return (
            "writing the value's own file in place empties it first: a crash then loses "
            "the old value; write a temporary file and os.replace it onto the name"
        )
    return ""


def _live(check: Check, store_class: Callable[[Path], Any], folder: Path) -> None:
    try:
        _restart(check, store_class, folder)
    except Exception as exc:  # the learner's store, failing inside the worker
        check.fail(f"the worker could not use your store: {type(exc).__name__}: {exc}")


def _restart(check: Check, store_class: Callable[[Path], Any], folder: Path) -> None:
    def open_store() -> LearnerStore:
        return LearnerStore(store_class(folder / "tasks"), WireCodec(Task))

    ids: list[str] = []
    first_life = notebook_worker(
        "nb11-check", store=open_store(), state_dir=folder, keep_tasks=True
    )
    with first_life as first, Watch(of_worker(first, LANE), check.timeline):
        for name in ("kept-1", "kept-2"):
            task = first.submit(TaskEvent(Task(name=name, image="cube/echo")))
            ids.append(str(task.id))
        before = {i: first.wait_for(i, State.Running, timeout=10).container_id for i in ids}
        time.sleep(0.3)  # long enough to see in the picture
    check.timeline.fault("worker restarted", instant=True)  # its tasks' processes stay
    second_life = notebook_worker("nb11-check", store=open_store(), state_dir=folder)
    with second_life as second, Watch(of_worker(second, LANE), check.timeline):
        time.sleep(0.3)  # the restarted worker inspects what it adopted, several times
        for task_id in ids:
            try:
                after = second.get_task(task_id)
            except KeyError:
                check.fail("after the restart the worker did not find a task in your store")
                continue
            if after.state is not State.Running or after.container_id != before[task_id]:
                check.fail(
                    f"after the restart {after.name} is {after.state.name} as "
                    f"{after.container_id or 'nothing'}, not re-adopted as "
                    f"{before[task_id]}"
                )
