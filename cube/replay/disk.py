"""Simulated disks: what a component keeps outlives its crash, and a disk can fill up.

Each store is a :class:`~cube.store.MemoryStore` (the same codecs and the same handling
of unreadable records as on disk) that the simulation keeps across a component's lives,
as files are. A put that returns is durable, as the disk store's is (it commits before
it returns), so a power cut here is a crash. What can go wrong is room: while a
:class:`Volume` is full, every write on it raises :class:`~cube.store.StoreFull` and
writes nothing, as a full disk does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cube.manager.stores import Stores
from cube.store import Codec, JsonCodec, MemoryStore, StoreFull, WireCodec
from cube.task import Task


@dataclass
class Volume:
    name: str
    full: bool = False


class SimStore(MemoryStore[Any]):
    """A store on a :class:`Volume`."""

    def __init__(self, volume: Volume, codec: Codec[Any], name: str) -> None:
        super().__init__(codec, name=f"{volume.name}/{name}")
        self.volume = volume

    def _raw_put(self, key: str, text: str) -> None:
        if self.volume.full:
            raise StoreFull(f"no space left on {self.volume.name} (simulated)")
        super()._raw_put(key, text)


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
    return Stores.made_by(lambda name, codec: SimStore(volume, codec, name))
