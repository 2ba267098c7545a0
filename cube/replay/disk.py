"""Simulated disks: what a component keeps outlives its crash, a disk can fill up, and a
power cut loses what was not flushed.

Each store is a :class:`~cube.store.MemoryStore` (the same codecs and the same handling
of unreadable records as on disk) that the simulation keeps across a component's lives,
as files are. A worker's puts are durable when they return, as its disk stores' are.
The manager's are flushed in groups, as on disk (:class:`~cube.store.DiskStore`,
``sync="grouped"``): a write is seen at once and durable at the next
:meth:`~cube.store.Store.flush`, and a power cut (:meth:`Volume.power_cut`) undoes every
write since. While a :class:`Volume` is full, every write on it raises
:class:`~cube.store.StoreFull` and writes nothing, as a full disk does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cube.manager.stores import MADE_AGAIN, Stores
from cube.store import Codec, JsonCodec, MemoryStore, StoreFull, WireCodec
from cube.task import Task


@dataclass
class Volume:
    name: str
    full: bool = False
    stores: list[SimStore] = field(default_factory=list)

    def power_cut(self) -> int:
        """The machine loses its power: every store on it forgets its unflushed writes.
        Returns how many were lost."""
        return sum(store.power_cut() for store in self.stores)


class SimStore(MemoryStore[Any]):
    """A store on a :class:`Volume`; ``grouped``: its writes are durable only once
    flushed."""

    def __init__(self, volume: Volume, codec: Codec[Any], name: str, grouped: bool = False) -> None:
        super().__init__(codec, name=f"{volume.name}/{name}")
        self.volume, self.grouped = volume, grouped
        self._before: dict[str, str | None] = {}  # unflushed keys: their durable text
        volume.stores.append(self)

    def _raw_put(self, key: str, text: str) -> None:
        if self.volume.full:
            raise StoreFull(f"no space left on {self.volume.name} (simulated)")
        self._unflushed(key)
        super()._raw_put(key, text)

    def _raw_delete(self, key: str) -> None:
        self._unflushed(key)
        super()._raw_delete(key)

    def _unflushed(self, key: str) -> None:
        if self.grouped and key not in self._before:
            self._before[key] = self._data.get(key)

    def flush(self) -> None:
        self._before.clear()

    def power_cut(self) -> int:
        for key, text in self._before.items():
            if text is None:
                self._data.pop(key, None)
            else:
                self._data[key] = text
        lost, self._before = len(self._before), {}
        return lost


@dataclass
class WorkerDisk:
    """What a worker keeps across its lives."""

    volume: Volume

    def __post_init__(self) -> None:
        self.tasks = SimStore(self.volume, WireCodec(Task), "tasks")
        self.timers = SimStore(self.volume, JsonCodec(), "timers")
        self.forgotten = SimStore(self.volume, JsonCodec(), "forgotten")
        self.leader = SimStore(self.volume, JsonCodec(), "leader")


def manager_stores(volume: Volume) -> Stores:
    """A manager's stores, on ``volume``."""
    return Stores.made_by(
        lambda name, codec: SimStore(volume, codec, name, grouped=name not in MADE_AGAIN)
    )
