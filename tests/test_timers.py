"""The durable work queue: due times survive a restart; a busy key is never handed out
twice at once."""

from __future__ import annotations

import threading
import time

from cube.store import DiskStore, JsonCodec, MemoryStore
from cube.timers import TimerQueue, WorkQueue


def test_due_times_are_kept_on_disk_and_read_back(tmp_path):
    queue = TimerQueue(DiskStore(tmp_path / "t", JsonCodec()))
    now = time.time()
    queue.schedule("later", now + 60, "restart 2 in 60 s")
    queue.schedule("soon", now + 5, "retry")
    queue.schedule("now", now, "an order")  # found again from the records: memory only
    queue.store.close()

    again = TimerQueue(DiskStore(tmp_path / "t", JsonCodec()))
    entries = [(k, w) for k, _, w in again.items()]
    assert entries == [("soon", "retry"), ("later", "restart 2 in 60 s")]
    assert again.pop_due(now + 5) == ["soon"]
    assert again.next_due() == now + 60
    again.store.close()
    third = TimerQueue(DiskStore(tmp_path / "t", JsonCodec()))
    assert [k for k, _, _ in third.items()] == ["later"]


def test_the_earlier_time_wins_unless_set_on_purpose():
    queue = TimerQueue(MemoryStore(JsonCodec()))
    base = time.time() + 100
    assert queue.schedule("k", base) and not queue.schedule("k", base + 100)
    assert queue.due_at("k") == base
    assert queue.schedule("k", base - 50) and queue.due_at("k") == base - 50
    queue.set("k", base + 200)
    assert queue.due_at("k") == base + 200 and queue.pop_due(base + 199) == []
    queue.set("k", None)
    assert "k" not in queue and len(queue) == 0


def test_an_unreadable_entry_is_due_at_once(tmp_path):
    store = DiskStore(tmp_path / "t", JsonCodec())
    store.put("odd", ["not", "a", "timer"])
    queue = TimerQueue(store)
    assert queue.pop_due() == ["odd"]


def test_a_busy_key_waits_and_goes_again_when_done():
    queue = WorkQueue(MemoryStore(JsonCodec()))
    queue.schedule("t")
    assert queue.take() == ["t"] and queue.busy("t")
    queue.schedule("t")  # asked for while busy
    assert queue.take() == []  # not handed out twice
    queue.done("t")
    assert queue.take() == ["t"]
    queue.done("t", again_at=time.time() + 60, why="retry")
    assert queue.take() == [] and queue.why("t") == "retry"


def test_waiting_wakes_on_a_new_entry():
    queue = TimerQueue(MemoryStore(JsonCodec()))
    woke = threading.Event()

    def sleeper() -> None:
        with queue.changed:
            queue.wait(10)
        woke.set()

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.05)
    queue.schedule("now")
    assert woke.wait(2)
    thread.join()


def test_a_due_time_the_disk_has_no_room_for_is_still_due_in_this_life():
    """Found by the simulator (seeds 9 and 13): a full disk made the work loop's
    "look again at T" raise, and the look was lost for good."""
    from cube.store import StoreFull

    class Full(MemoryStore):
        def _raw_put(self, key: str, text: str) -> None:
            raise StoreFull("no space left on device")

    queue = WorkQueue(Full(JsonCodec()))
    soon = time.time() + 0.2
    queue.schedule("task-1", soon, why="retry")
    assert queue.due_at("task-1") == soon
    assert queue.take(now=soon + 1) == ["task-1"]
