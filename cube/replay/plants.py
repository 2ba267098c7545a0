"""Known bugs, planted one at a time, to prove that the simulator finds them.

A test suite that never fails proves nothing; a simulator is worth what it catches. Each
plant here puts back one mistake a real orchestrator could make (and that Cube made, or
nearly did), for the length of a ``with`` block. The tests require every plant to be
caught within a stated number of seeds, and notebook 09 plants one to show a double run
being found, shrunk and drawn.

- ``strays``: copies on workers other than the task's own are never stopped.
- ``forgotten restart``: a task waiting out its restart backoff is not looked at again
  when its due time comes (the due time is not kept).
- ``order twice``: a worker takes a repeat of the order it follows as a new one, and
  starts a second copy beside the first.
- ``unchecked lease`` (several managers): a leader believes it leads as long as it has
  not been told otherwise, without looking at its lease's deadline, so a leader that
  was paused past its lease goes on giving orders when it thaws, beside the new one.
- ``never flushed``: the manager's writes are grouped for a flush that never comes, so
  a task it accepted is lost when its machine loses power.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from cube.etcd.election import Election
from cube.manager import reconcile
from cube.manager.stores import Stores
from cube.task import State, new_attempt
from cube.worker import orders

PLANTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {}
SEVERAL_MANAGERS = {"unchecked lease"}  # plants that only several managers can show


def plant(name: str) -> contextlib.AbstractContextManager[None]:
    """The bug ``name`` (one of :data:`PLANTS`), for a ``with`` block."""
    if name not in PLANTS:
        raise ValueError(f"no plant {name!r}: there are {', '.join(PLANTS)}")
    return PLANTS[name]()


def _plant(name: str) -> Callable[[Callable[[], Iterator[None]]], Any]:
    def register(fn: Callable[[], Iterator[None]]) -> Any:
        PLANTS[name] = contextlib.contextmanager(fn)
        return fn

    return register


@contextlib.contextmanager
def _swap(owner: Any, attribute: str, replacement: Any) -> Iterator[None]:
    original = getattr(owner, attribute)
    setattr(owner, attribute, replacement)
    try:
        yield
    finally:
        setattr(owner, attribute, original)


@_plant("strays")
def _strays() -> Iterator[None]:
    right = reconcile._stops

    def stops(task: Any, seen: Any, *, everywhere: bool) -> tuple[Any, ...]:
        return right(task, seen, everywhere=everywhere) if everywhere else ()

    with _swap(reconcile, "_stops", stops):
        yield


@_plant("forgotten restart")
def _forgotten_restart() -> Iterator[None]:
    right = reconcile._problem

    def problem(*args: Any, **kwargs: Any) -> reconcile.Plan:
        return dataclasses.replace(right(*args, **kwargs), wake=None)

    with _swap(reconcile, "_problem", problem):
        yield


@_plant("order twice")
def _order_twice() -> Iterator[None]:
    right = orders.accept

    def accept(stored: Any, event: Any) -> Any:
        record = right(stored, event)
        repeat = record is None and stored is not None and stored.state is State.Running
        if repeat and orders.wanted(event) is State.Running:
            return new_attempt(event.task)  # the copy that runs is forgotten, not stopped
        return record

    with _swap(orders, "accept", accept):
        yield


@_plant("unchecked lease")
def _unchecked_lease() -> Iterator[None]:
    def is_leader(self: Election) -> bool:
        return self._leading and self._lease is not None  # never asks lease.alive

    with _swap(Election, "is_leader", property(is_leader)):
        yield


@_plant("never flushed")
def _never_flushed() -> Iterator[None]:
    with _swap(Stores, "flush", lambda self: None):  # told to clients, never made durable
        yield
