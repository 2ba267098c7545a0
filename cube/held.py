"""Limits on blocking queries held open: per client address and in all.

A blocking query (``?index=N&wait=60s``) holds a server thread until something changes
or its wait is over. Without a limit, a thousand of them from anyone (no token needed on
an open server) take every thread the pool may grow to, and ``/health`` stops answering:
the manager then marks a healthy worker down. So, as Consul's
``limits.http_max_conns_per_client`` and Nomad's limits do, a server holds at most
``per_client`` blocking queries per client address and ``total`` in all, ``total``
being half the threads its pool may grow to: the other half always serves everything
else (``/health``, orders, plain reads, and the manager's own calls).

Past a limit, a blocking query is answered **429 Too Many Requests** with
``Retry-After``, rather than answered at once as a plain read: an immediate answer would
send a watching client straight back with the same question, a busy loop on both sides,
while a 429 tells it to wait (our own watchers then read the whole list once per round,
as they do for a worker that keeps no index). Nothing is changed by a refused query.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

PER_CLIENT = 256  # Consul's default is 200; a manager with its CLI and widgets uses a few
TOTAL = 512
RETRY_AFTER = 2  # seconds


@dataclass(frozen=True)
class WatchLimits:
    """How many blocking queries a server holds at once, per client address and in
    all, and how long a client refused is asked to wait."""

    per_client: int = PER_CLIENT
    total: int = TOTAL
    retry_after: int = RETRY_AFTER


class TooManyWatches(Exception):
    """A blocking query past a limit (429, with ``Retry-After``)."""

    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.http_headers = {"Retry-After": str(retry_after)}


class HeldWatches:
    """The blocking queries a server holds now, counted per client address."""

    def __init__(self, limits: WatchLimits | None = None) -> None:
        self.limits = limits or WatchLimits()
        self._by_client: Counter[str] = Counter()
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return self._total

    def held_by(self, client: str) -> int:
        with self._lock:
            return self._by_client[client]

    @contextlib.contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """Count one more blocking query from ``client`` while it waits, or refuse it
        (:class:`TooManyWatches`) when a limit is reached."""
        limits = self.limits
        with self._lock:
            if self._by_client[client] >= limits.per_client:
                raise TooManyWatches(
                    f"{limits.per_client} blocking queries (?index=) from {client} are held "
                    "already, the most one client address may hold; ask again after "
                    f"Retry-After seconds, or read without ?index",
                    limits.retry_after,
                )
            if self._total >= limits.total:
                raise TooManyWatches(
                    f"{limits.total} blocking queries (?index=) are held already, the most "
                    "this server holds; ask again after Retry-After seconds, or read "
                    "without ?index",
                    limits.retry_after,
                )
            self._by_client[client] += 1
            self._total += 1
        try:
            yield
        finally:
            with self._lock:
                self._total -= 1
                self._by_client[client] -= 1
                if not self._by_client[client]:
                    del self._by_client[client]
