"""Leader epochs: a worker follows the newest leader it has heard from.

With several managers on etcd, one leads at a time, and each leader has an **epoch**: a
number that only grows (its election key's create revision). A leader that was paused
past its lease and resumes may send an order before it notices it was deposed; the
order's epoch is then older than the one the new leader has been sending, so the worker
can tell it apart and refuse it (a *fencing token*).

A request carries its leader's epoch in the ``X-Cube-Epoch`` header. The worker keeps the
highest epoch any request brought (the new leader probes every worker each second, so a
worker learns of it quickly), in a store, so a restarted worker still knows it. An order
(``POST /tasks``, ``DELETE /tasks/{id}``) with an older epoch is refused (409) and
changes nothing; one with no epoch at all (a single manager, the book's Go manager) is
taken as before. Reads are never refused: they are harmless.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from cube.store import Store, StoreError

log = logging.getLogger(__name__)

HEADER = "X-Cube-Epoch"
MAX_EPOCH = (1 << 63) - 1  # etcd revisions are int64
KEY = "epoch"


class BadEpoch(ValueError):
    """The header is not a positive whole number below 2**63 (400)."""

    http_status = 400

    def __init__(self, text: str) -> None:
        super().__init__(
            f"{HEADER} must be a whole number from 1 to {MAX_EPOCH}, not {text[:40]!r}"
        )


class DeposedOrder(ValueError):
    """An order from a leader older than the one this worker follows (409). The answer
    carries the epoch followed in ``X-Cube-Epoch``, so a client can tell this refusal
    from the other 409s without reading the message."""

    http_status = 409

    def __init__(self, order: int, held: int) -> None:
        super().__init__(
            f"order from a deposed leader (epoch {order}; this worker follows epoch {held})"
        )
        self.order, self.held = order, held
        self.http_headers = {HEADER: str(held)}


def parse(text: str | None) -> int | None:
    """The epoch a header says, or None when there is none. Only plain ASCII digits
    (no sign, space or control character), so what is checked is what was sent."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_EPOCH))):
        raise BadEpoch(text)
    epoch = int(text)
    if not 0 < epoch <= MAX_EPOCH:
        raise BadEpoch(text)
    return epoch


def check(order: int | None, held: int) -> None:
    """Refuse an order whose epoch is older than the one followed; an order without
    one is from a single manager, and is taken."""
    if order is not None and order < held:
        raise DeposedOrder(order, held)


class LeaderEpoch:
    """The highest epoch this worker has heard of, kept in ``store`` and read back on
    start. Raising it is a max under a lock, written before it is believed."""

    def __init__(self, store: Store[Any]) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._value = _read(store)

    @property
    def value(self) -> int:
        """0 until a request brought an epoch."""
        return self._value

    def heard(self, epoch: int | None) -> int:
        """A request came with ``epoch``: follow it if it is newer. Returns the epoch
        followed now."""
        with self._lock:
            return self._raise(epoch)

    @contextlib.contextmanager
    def order(self, epoch: int | None) -> Iterator[None]:
        """Admit an order from ``epoch`` (:class:`DeposedOrder` if older), holding the
        epoch while it is carried out: no newer leader is heard of halfway, so an order
        admitted is never applied after the worker learned that its leader was
        deposed."""
        with self._lock:
            check(epoch, self._value)
            self._raise(epoch)
            yield

    def _raise(self, epoch: int | None) -> int:
        if epoch is not None and epoch > self._value:
            self.store.put(KEY, epoch)
            self._value = epoch
        return self._value

    def close(self) -> None:
        self.store.close()


def _read(store: Store[Any]) -> int:
    """The epoch stored; 0 when none is (or when it cannot be read, said in the log: the
    leader's next probe brings it back)."""
    try:
        value = store.get(KEY)
    except KeyError:
        return 0
    except StoreError as exc:
        log.warning("the leader epoch cannot be read (%s); following none until told", exc)
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_EPOCH:
        return value
    log.warning("the stored leader epoch %r is not an epoch; following none until told", value)
    return 0
