"""The history of orders: every task event, findable by its ID and by its time.

Events are stored by ID, so that a retried submission is recognised at once, and listed
by time through a second, time-ordered index (``<nanoseconds when recorded>-<event ID>``
-> event ID), so "the newest 20" reads 20 keys from the end instead of decoding every
event ever stored. The history is bounded: beyond ``max_events`` events, or events older than
``max_age`` seconds, the oldest go.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from cube import clock
from cube.records import Changes
from cube.store import Store, StoreError
from cube.task import TaskEvent

log = logging.getLogger(__name__)

BATCH = 200


class History:
    """Task events by ID (``events``) and by time (``index``)."""

    def __init__(self, events: Store[TaskEvent], index: Store[Any]) -> None:
        self.events, self.index = events, index
        self.changes = Changes()
        if self.index.count() < self.events.count():
            self._rebuild()

    def record(self, event: TaskEvent) -> None:
        """Store ``event`` (by ID first: the retry check reads that)."""
        event_id = str(event.id)
        self.events.put(event_id, event)
        self.index.put(f"{int(clock.now() * 1e9):020d}-{event_id}", event_id)  # when it came in
        self.changes.bump()

    def get(self, event_id: str) -> TaskEvent | None:
        try:
            return self.events.get(event_id)
        except KeyError:
            return None

    def newest(self, limit: int | None = None, task_id: str | None = None) -> list[TaskEvent]:
        """The newest events first, at most ``limit``, of one task if given. Reads only
        as far back as it must."""
        out: list[TaskEvent] = []
        seen = 0
        while limit is None or len(out) < limit:
            keys = self.index.first_keys(seen + BATCH, newest=True)[seen:]
            if not keys:
                break
            seen += len(keys)
            for key in keys:
                event = self._event_at(key)
                if event is not None and (task_id is None or str(event.task.id) == task_id):
                    out.append(event)
                    if limit is not None and len(out) >= limit:
                        break
        return out

    def prune(self, max_events: int, max_age: float) -> int:
        """Drop the oldest events beyond ``max_events`` or older than ``max_age``
        seconds; returns how many went."""
        gone = 0
        excess = max(0, self.index.count() - max_events)
        cutoff = f"{int((clock.now() - max_age) * 1e9):020d}"
        while True:
            keys = self.index.first_keys(BATCH)
            doomed = [k for i, k in enumerate(keys) if i < excess - gone or k < cutoff]
            for key in doomed:
                self._drop(key)
            gone += len(doomed)
            if len(doomed) < len(keys) or not keys:
                break
        if gone:
            log.info("history: forgot the %d oldest events", gone)
        return gone

    def _event_at(self, key: str) -> TaskEvent | None:
        try:
            return self.events.get(self.index.get(key))
        except (KeyError, StoreError):
            return None

    def _drop(self, key: str) -> None:
        with contextlib.suppress(KeyError, StoreError):
            self.events.delete(self.index.get(key))
        with contextlib.suppress(KeyError):
            self.index.delete(key)

    def _rebuild(self) -> None:
        """Index the events the index lacks: stored before it existed, or written to it
        last before the machine went down (it is written without a flush per write)."""
        indexed = {str(event_id) for _, event_id in self.index.items()}
        missing = [(k, e) for k, e in self.events.items() if k not in indexed]
        for event_id, event in missing:
            self.index.put(_time_key(event, event_id), event_id)
        log.info("history: indexed %d events by time", len(missing))


def _time_key(event: TaskEvent, event_id: str) -> str:
    """For events the index lacks: their own timestamp is all there is."""
    moment = event.timestamp.timestamp() if event.timestamp else 0.0
    return f"{max(0, int(moment * 1e9)):020d}-{event_id}"
