"""Where a manager keeps everything it knows, and the one change of layout so far.

- ``tasks``: every task, keyed by ID: what is wanted of it and what became of it (its
  ``Worker`` field is where it was placed);
- ``events``: the history of orders (submissions, stops, restarts, moves), keyed by
  event ID, so a retried submission is recognised; ``history`` lists them by time
  (:mod:`cube.manager.history`);
- ``timers``: the durable work queue (:mod:`cube.timers`): which task to look at when;
- ``nodes``: the last known state of each worker, for the first decisions after a start
  (like ``history``, written without a flush per write: see :data:`MADE_AGAIN`);
- ``outputs``: the last lines each finished task printed, kept before its worker may
  forget it (:mod:`cube.manager.outputs`);
- ``findings``: what the manager found out about a task that no record says: its
  failed health check, the workers that refused it (:mod:`cube.manager.findings`).

They live in a local directory (diskcache, the default), in memory, or on etcd
(:meth:`Stores.on_etcd`), where several managers share them
(:mod:`cube.manager.leadership`).

Managers before the control loop kept a ``queue`` of actions and a ``stopping`` set
instead of ``timers``; :func:`migrate` turns what they left into desired state once.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cube.etcd import EtcdClient, EtcdStore
from cube.store import Codec, DiskStore, JsonCodec, Store, StoreError, WireCodec, open_store
from cube.task import State, Task, TaskEvent

log = logging.getLogger(__name__)

# Stores whose content is made again when some of it is lost (they are written without
# ever a flush to the disk, see DiskStore): the history's index by time is rebuilt from
# the events, and a worker's last known state is asked of it again. The others are
# flushed in groups (Stores.flush).
MADE_AGAIN = ("history", "nodes")


@dataclass
class Stores:
    """Where a manager keeps everything it knows."""

    tasks: Store[Task]
    events: Store[TaskEvent]
    history: Store[Any]
    timers: Store[Any]
    nodes: Store[Any]
    outputs: Store[Any]
    findings: Store[Any]
    etcd: EtcdClient | None = None

    @classmethod
    def made_by(
        cls, sub: Callable[[str, Codec[Any]], Store[Any]], etcd: EtcdClient | None = None
    ) -> Stores:
        """Every store, each made by ``sub(name, codec)``: the one list of them."""
        return cls(
            tasks=sub("tasks", WireCodec(Task)),
            events=sub("events", WireCodec(TaskEvent)),
            history=sub("history", JsonCodec()),
            timers=sub("timers", JsonCodec()),
            nodes=sub("nodes", JsonCodec()),
            outputs=sub("outputs", JsonCodec()),
            findings=sub("findings", JsonCodec()),
            etcd=etcd,
        )

    @classmethod
    def open(cls, kind: str, directory: str | Path | None) -> Stores:
        stores = cls.made_by(
            lambda name, codec: open_store(
                kind,
                Path(directory) / name if directory else None,
                codec,
                sync="never" if name in MADE_AGAIN else "grouped",
            )
        )
        if directory is not None and kind == "persistent":
            migrate(Path(directory), stores)
        return stores

    @classmethod
    def on_etcd(cls, client: EtcdClient, prefix: str = "/cube") -> Stores:
        """The same stores on etcd, under ``prefix`` (``/cube/tasks/<ID>``...), shared by
        every manager of the cluster; the client is closed with them."""
        return cls.made_by(
            lambda name, codec: EtcdStore(client, f"{prefix.rstrip('/')}/{name}", codec),
            etcd=client,
        )

    def describe(self) -> str:
        """Where this state is, for ``GET /health``."""
        if self.etcd is not None:
            return "etcd://" + ",".join(e.split("://", 1)[-1] for e in self.etcd.endpoints)
        return "disk" if isinstance(self.tasks, DiskStore) else "memory"

    @property
    def shared(self) -> bool:
        """On etcd: other managers write here too."""
        return self.etcd is not None

    def all(self) -> tuple[Store[Any], ...]:
        every = (self.tasks, self.events, self.history, self.timers, self.nodes)
        return (*every, self.outputs, self.findings)

    def flush(self) -> None:
        """Return once every write so far is durable. On disk, writes are flushed in
        groups (see :class:`~cube.store.DiskStore`): nothing a write changed may be
        told to anyone (a client's answer, a worker's order) before this returns."""
        for store in self.all():
            store.flush()

    def close(self) -> None:
        for store in self.all():
            store.close()
        if self.etcd is not None:
            self.etcd.close()


def migrate(directory: Path, stores: Stores) -> None:
    """Tasks an older manager was stopping become wanted Completed, and everything its
    queue held gets looked at; then the old stores go."""
    for name in ("stopping", "queue"):
        old = directory / name
        if not old.is_dir():
            continue
        legacy = open_store("persistent", old, JsonCodec())
        try:
            for key, value in legacy.items():
                stop = name == "stopping" or value.get("Action") == "stop"
                task_id = key if name == "stopping" else str(value.get("TaskID", ""))
                _want(stores, task_id, State.Completed if stop else None)
        except (StoreError, AttributeError) as exc:
            log.warning("could not read the old %s store (%s); looking at every task", name, exc)
        finally:
            legacy.close()
        shutil.rmtree(old, ignore_errors=True)
        log.info("moved the old %s store into desired state and timers", name)


def _want(stores: Stores, task_id: str, desired: State | None) -> None:
    try:
        task = stores.tasks.get(task_id)
    except (KeyError, StoreError):
        return
    if desired is not None and task.desired is not desired:
        stores.tasks.put(task_id, task.replace(desired=desired, generation=task.generation + 1))
    stores.timers.put(task_id, {"Due": 0.0, "Why": "migrated"})
