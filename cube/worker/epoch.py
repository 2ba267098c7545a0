"""The leader a worker follows: orders from a deposed one, or from no leader, are refused.

With several managers on etcd, one leads at a time, and each leader has an **epoch**
(its election key's create revision) within the **series** of the etcd it leads on
(:mod:`cube.proof`). A leader that was paused past its lease and resumes may send an
order before it notices it was deposed; the order's stamp is then older than the one
the new leader sent, so the worker can tell it apart and refuse it (a *fencing token*).

A worker believes a stamp only when its proof checks with the leader secret it was
given (``cube worker --leader-secret``), and only an **order** moves it: ``POST
/tasks``, ``DELETE /tasks/{id}`` and ``PUT /leader`` (the leader announcing itself when
it takes office or finds a worker back). Reads never do, whatever they carry. So:

- an order with a proven stamp at least as new as the one followed is carried out, and
  its stamp followed from then on (stored first, so a restart keeps it);
- an order with an older one is refused (409) and changes nothing; the answer carries
  the stamp followed, with its proof, so the manager that sent it can check that a
  newer leader really exists before it steps down;
- a stamp that does not check, or one sent to a worker with no secret, is refused
  (403), as is any order without a stamp to a worker that has a secret; a malformed one
  is a 400, as is one whose series claims to be born more than a day ahead of this
  worker's clock; none of these is stored;
- a worker with no secret (one manager, the book's Go manager) takes orders without a
  stamp, as before.

``cube worker --forget-leader`` starts a worker following no leader: for when the
managers' etcd was restored from a backup (its epochs went back in time) or the clock
of the machine that made a new series was wrong. The next proven order is followed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from cube import clock
from cube.proof import (
    HEADER,
    MAX_EPOCH,
    PROOF_HEADER,
    BadEpoch,
    LeaderSecret,
    Stamp,
    Unproven,
    read,
)
from cube.store import Store, StoreError

log = logging.getLogger(__name__)

__all__ = ["HEADER", "MAX_EPOCH", "BadEpoch", "DeposedOrder", "LeaderEpoch", "Unproven"]
KEY = "leader"
OLD_KEYS = ("epoch",)  # an unproven epoch kept by earlier versions: never believed
MAX_AHEAD_MS = 86_400_000  # a series born later than a day ahead of this clock is absurd


class DeposedOrder(ValueError):
    """An order from a leader older than the one this worker follows (409). The answer
    carries the stamp followed (``X-Cube-Epoch`` and its proof), so a client can tell
    this refusal from the other 409s, and check it."""

    http_status = 409

    def __init__(self, order: Stamp, held: Stamp) -> None:
        super().__init__(
            f"order from a deposed leader ({order.describe()}; this worker follows "
            f"{held.describe()})"
        )
        self.order, self.held = order, held
        self.http_headers = held.headers()


class LeaderEpoch:
    """The newest proven stamp this worker has had an order with, kept in ``store``
    and read back (and checked again) on start."""

    def __init__(
        self, store: Store[Any], secret: LeaderSecret | None = None, *, forget: bool = False
    ) -> None:
        self.store = store
        self.secret = secret
        self._lock = threading.Lock()
        self._stamp = _read(store, secret)
        if forget:
            self.forget()

    @property
    def stamp(self) -> Stamp | None:
        """The stamp followed (None until a proven order brought one)."""
        return self._stamp

    @property
    def value(self) -> int:
        """The epoch followed; 0 for none."""
        return self._stamp.epoch if self._stamp is not None else 0

    def believe(self, epoch: str | None, proof: str | None) -> Stamp | None:
        """The stamp a request's headers carry, checked: None when there is none,
        :class:`BadEpoch` (400) or :class:`Unproven` (403) when it cannot be believed.
        Nothing is stored."""
        stamp = read(epoch, proof)
        if stamp is None:
            return None
        if self.secret is None:
            raise Unproven(
                f"{HEADER} {stamp.epoch}: this worker has no leader secret to check it "
                "with (cube worker --leader-secret); nothing was changed"
            )
        self.secret.check(stamp)
        if stamp.born > int(clock.now() * 1000) + MAX_AHEAD_MS:
            # signed, but by a manager whose clock is far ahead: followed, its series would
            # outrank every series made after it with a right clock
            raise BadEpoch(PROOF_HEADER, str(stamp.born), "a series born before tomorrow")
        return stamp

    @contextlib.contextmanager
    def order(self, stamp: Stamp | None) -> Iterator[None]:
        """Admit an order with ``stamp`` (already believed), following it from now on,
        and hold it while the order is carried out: no newer leader is followed
        halfway, so an order admitted is never applied after the worker learned that
        its leader was deposed."""
        with self._lock:
            if stamp is None:
                if self.secret is not None:
                    raise Unproven(
                        f"orders to this worker need a leading manager's signed epoch "
                        f"({HEADER} with its proof)"
                    )
            else:
                held = self._stamp
                if held is not None and stamp < held:
                    raise DeposedOrder(stamp, held)
                if held is None or held < stamp:
                    self.store.put(KEY, stamp.to_json())  # stored before it is believed
                    self._stamp = stamp
            yield

    def forget(self) -> None:
        """Follow no leader: the next proven order is followed, whatever its epoch."""
        with self._lock:
            for key in (KEY, *OLD_KEYS):
                with contextlib.suppress(KeyError):
                    self.store.delete(key)
            held, self._stamp = self._stamp, None
        log.warning(
            "this worker follows no leader now (it followed %s)",
            held.describe() if held else "none",
        )

    def close(self) -> None:
        self.store.close()


def _read(store: Store[Any], secret: LeaderSecret | None) -> Stamp | None:
    """The stamp stored, if it still checks with ``secret``; else None, said in the log
    (the leader announces itself again when it finds the worker back)."""
    try:
        value = store.get(KEY)
    except KeyError:
        return None
    except StoreError as exc:
        log.warning("the leader followed cannot be read (%s); following none until told", exc)
        return None
    try:
        stamp = Stamp.from_json(value)
    except ValueError:
        log.warning("the stored leader %.80r is not a stamp; following none until told", value)
        return None
    if secret is None or not secret.proves(stamp):
        log.warning(
            "the stored leader (%s) does not check with this worker's leader secret; "
            "following none until told",
            stamp.describe(),
        )
        return None
    return stamp
