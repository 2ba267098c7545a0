"""A lease kept alive by a loop, that knows by its own clock when it may be gone.

etcd deletes a lease's keys once it has not been renewed for its TTL. The holder cannot
learn that from etcd in time (a paused or cut-off process hears nothing), so it keeps
its own **deadline**: the time it *sent* the last renewal etcd accepted, plus the TTL.
etcd's own expiry is later than that (it counts from when it received the renewal,
and only ever extends leases, on a restart or a change of etcd leader), so when
:attr:`Lease.alive` is true, etcd still has the lease. It is computed from the clock at
each look, not by the loop: a process resumed after a SIGSTOP past its deadline sees
``alive`` false before its first instruction after the pause can act on it.

Its loop (:mod:`cube.loops`: a thread, or a simulation's events) renews every third of
the TTL; a renewal that fails is tried again (on the
next endpoint) until the deadline. Past it, or when etcd answers that the lease is
gone, ``on_lost(reason)`` is called once, and the lease is revoked if etcd can still
be told (so its keys go now rather than at etcd's expiry).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from cube import clock, loops
from cube.etcd.client import EtcdClient
from cube.etcd.errors import EtcdError

log = logging.getLogger(__name__)

RETRY = 0.2  # seconds between two tries of a renewal that failed


class Lease:
    """A lease of ``ttl`` seconds (whole seconds, at least etcd's minimum, about 2)."""

    def __init__(
        self, client: EtcdClient, ttl: int, on_lost: Callable[[str], None] | None = None
    ) -> None:
        self.client = client
        self.ttl = max(1, int(ttl))
        self.on_lost = on_lost
        self.id = 0
        self.lost_reason = ""
        self._deadline = 0.0  # clock.monotonic() past which etcd may have dropped it
        self._next_renewal = 0.0
        self._lost = threading.Event()
        self._loop: loops.Loop | None = None
        self._lock = threading.Lock()

    def grant(self) -> Lease:
        """Ask etcd for the lease and start renewing it."""
        sent = clock.monotonic()
        self.id, self.ttl = self.client.grant(self.ttl)
        self._deadline = sent + self.ttl
        self._next_renewal = sent + self.ttl / 3
        self._loop = loops.start(f"etcd-lease-{self.id:x}", self._keep)
        return self

    @property
    def alive(self) -> bool:
        """True only while etcd surely still has the lease."""
        return self.id != 0 and not self._lost.is_set() and clock.monotonic() < self._deadline

    def remaining(self) -> float:
        """Seconds until the deadline (0 once lost)."""
        return max(0.0, self._deadline - clock.monotonic()) if self.alive else 0.0

    def wait_lost(self, timeout: float | None = None) -> bool:
        return self._lost.wait(timeout)

    def revoke(self) -> None:
        """Give the lease up now (its keys are deleted); stops renewing. Best effort:
        without etcd, the lease simply expires. The holder gave it up, so ``on_lost``
        is not called."""
        self._stop("revoked", tell=False)
        if self.id:
            try:
                self.client.revoke(self.id)
            except EtcdError as exc:
                log.info("could not revoke lease %x (%s); it expires by itself", self.id, exc)

    def close(self) -> None:
        self.revoke()

    # ------------------------------------------------------------------ the loop

    def _keep(self) -> float | None:
        """One look: renew when due; the seconds until the next look (None: lost)."""
        if self._lost.is_set():
            return None
        now = clock.monotonic()
        if now >= self._deadline:
            self._expire(f"lease {self.id:x} not renewed within its {self.ttl} s")
            return None
        if now < self._next_renewal:
            return min(self._next_renewal, self._deadline) - now
        try:
            ttl = self.client.keepalive(self.id, timeout=max(0.1, self._deadline - now))
        except EtcdError as exc:
            log.info("renewing lease %x failed (%s); trying again", self.id, exc)
            self._next_renewal = now + RETRY
            return RETRY
        if ttl <= 0:
            self._expire(f"lease {self.id:x} expired in etcd")
            return None
        self._deadline = max(self._deadline, now + ttl)
        self._next_renewal = now + self.ttl / 3
        return self.ttl / 3

    def _expire(self, reason: str) -> None:
        if self._stop(reason):
            log.warning("%s", reason)
            with contextlib.suppress(EtcdError):
                self.client.revoke(self.id)  # its keys go now, if etcd can be told

    def _stop(self, reason: str, tell: bool = True) -> bool:
        """Mark the lease lost (once): True for the call that did it. ``tell``: call
        ``on_lost``."""
        if self._loop is not None:
            self._loop.stop()
        with self._lock:
            if self._lost.is_set():
                return False
            self.lost_reason = reason
            self._lost.set()
        if tell and self.on_lost is not None:
            try:
                self.on_lost(reason)
            except Exception:
                log.exception("on_lost failed for lease %x", self.id)
        return True
