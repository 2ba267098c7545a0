"""Read-your-writes across several managers on etcd.

Every manager answers reads from its own copy of the tasks, which a watch on etcd keeps
current (:class:`~cube.manager.leadership.Mirror`). That copy lags a write made through
another manager by a few milliseconds, long enough for a client that submitted through
one manager and reads through another to be told "no such task".

So a write's answer says where it landed in etcd's history: ``X-Cube-Revision`` is the
revision of the task's record after the write (the etcd revision, which every manager
shares, unlike ``X-Cube-Index``, which is each server's own). A client sends back the
highest revision it has been given, in the same header, on every later request, and
the manager it asks first catches up to it (:meth:`Catchup.reach`):

- for one task (a GET, a DELETE, its logs), by reading that one key from etcd (a
  linearizable range: one round trip) when its copy has not reached the revision;
- for a list, by waiting for its copy to reach the revision (woken by the watch, at
  most ``CATCH_UP`` seconds), then, if it still has not, by reading every task again;
  a revision beyond etcd's own was given by another cluster and is not waited for.

A DELETE, or a GET, of a task this manager does not know also reads that key before
answering 404, so a client that sends no revision (curl) is not told a task it just
created through another manager is missing. ``ManagerClient`` and the CLI remember the
revisions they are given and send them back by default (the CLI from one command to the
next, in a small file in the user's state directory). Kubernetes's API servers answer
from a watch cache the same way, and a read that names a resourceVersion waits for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bottle

from cube.client import REVISION_HEADER as HEADER
from cube.etcd import EtcdError
from cube.http import fail

if TYPE_CHECKING:
    from cube.manager.manager import Manager

CATCH_UP = 1.0  # seconds a list waits for this manager's copy before reading etcd
MAX_REVISION = (1 << 63) - 1


class Position:
    """How far into etcd's history this manager's copy of the tasks has read: every
    task change at or before :attr:`revision` is in it."""

    def __init__(self, revision: int = 0) -> None:
        self.revision = revision
        self._cond = threading.Condition()

    def advance(self, revision: int) -> None:
        with self._cond:
            if revision > self.revision:
                self.revision = revision
                self._cond.notify_all()

    def reached(self, revision: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until the copy has read ``revision``."""
        with self._cond:
            return self._cond.wait_for(lambda: self.revision >= revision, timeout)


class Catchup:
    """Brings one manager's copy up to what a client has seen written."""

    def __init__(self, manager: Manager, position: Position) -> None:
        self.m, self.position = manager, position

    def reach(self, revision: int, task_id: str | None = None) -> None:
        """Before answering about ``task_id`` (or about every task, when None), make sure
        this manager's copy holds every write up to ``revision`` (0: none asked), and
        that a task it does not know is really not in etcd."""
        try:
            if task_id is not None:
                if revision > self.position.revision or task_id not in self.m.tasks.records:
                    self.m.tasks.reread(task_id)
            elif revision > self.position.revision and not self._caught_up(revision):
                self.m.reread_all()
        except EtcdError as exc:
            raise fail(503, f"cannot read etcd to catch up to revision {revision}: {exc}") from None

    def _caught_up(self, revision: int) -> bool:
        """Whether the copy reaches ``revision`` within ``CATCH_UP`` seconds (woken by
        the watch), or the revision is not this etcd's to wait for."""
        return revision > self._current() or self.position.reached(revision, CATCH_UP)

    def _current(self) -> int:
        """etcd's revision now (a linearizable read of no key). A client's revision
        beyond it was given by another etcd (another cluster's managers): it says
        nothing about this one, and is not waited for."""
        etcd = self.m.stores.etcd
        return etcd.range("/", count_only=True).revision if etcd is not None else 0


def asked() -> int:
    """The revision this request's client has seen written (``X-Cube-Revision``), or 0;
    a value that is not a whole number from 1 to 2**63-1 is a 400."""
    text = bottle.request.get_header(HEADER)
    if text is None:
        return 0
    plain = text.isascii() and text.isdigit() and len(text) <= len(str(MAX_REVISION))
    if not plain or not 0 < int(text) <= MAX_REVISION:
        shown = repr(text[:40]) + ("..." if len(text) > 40 else "")
        raise fail(400, f"{HEADER} must be a whole number from 1 to {MAX_REVISION}, not {shown}")
    return int(text)


def plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Read ``X-Cube-Revision`` on every route, before it changes anything: a bad value
    is a 400 wherever it is sent (a route that does not catch up ignores a good one)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        asked()
        return callback(*args, **kwargs)

    return wrapper


def tell(manager: Manager, task_id: str) -> None:
    """Say in the answer the revision a write left ``task_id``'s record at (on etcd)."""
    revision = manager.tasks.records.revision_of(task_id)
    if revision:
        bottle.response.set_header(HEADER, str(revision))
