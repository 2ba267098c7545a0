"""Fault points: named places where a test (or a demonstration) can make a process die
or freeze.

Some instants are too short to hit from outside: a worker killed *after* the runtime
started a process and *before* the worker wrote that down is a window of microseconds.
To show that Cube survives a kill at exactly such an instant, the code marks it with
:func:`point`, and a process started with ``CUBE_FAULTS=<name>[,<name>...]`` kills itself
there with SIGKILL, as a power cut would. Without the variable a point costs one
dictionary lookup. (etcd's gofail and FreeBSD's fail points work the same way.)

Points: ``process-spawned`` (a task process exists, its pid not yet recorded),
``process-ready`` (it listens, its port not yet recorded), ``worker-started`` (the
runtime started a copy, the worker has not yet stored it Running), ``manager-saved``
(the manager stored a decision, its orders not yet sent), ``manager-sending`` (the
manager checked that it still leads and is about to send an order).

``<name>:stop`` freezes the process there instead (SIGSTOP, the first time only), as a
long garbage-collection pause or a hung machine would: what it does when resumed
(SIGCONT) is what fencing is for.

The simulator (:mod:`cube.replay`) reaches the same points through :func:`simulated`:
its handler decides, by seed, whether the component running at that instant crashes
there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

_ARMED = frozenset(p.strip() for p in os.environ.get("CUBE_FAULTS", "").split(",") if p.strip())
_frozen: set[str] = set()  # the points that froze the process once already
_handler: Callable[[str], None] | None = None  # the simulator's, while one runs
_owner = 0  # the thread the simulator runs in


def point(name: str) -> None:
    """Die here (SIGKILL, no clean-up at all) if ``name`` is armed in ``CUBE_FAULTS``;
    freeze here (SIGSTOP, once) if ``name:stop`` is."""
    handler = _handler
    if handler is not None and threading.get_ident() == _owner:
        handler(name)
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
    if f"{name}:stop" in _ARMED and name not in _frozen:
        _frozen.add(name)
        os.kill(os.getpid(), signal.SIGSTOP)


@contextlib.contextmanager
def simulated(handler: Callable[[str], None]) -> Iterator[None]:
    """Hand every point this thread reaches to ``handler`` until the block ends."""
    global _handler, _owner
    previous = _handler, _owner
    _handler, _owner = handler, threading.get_ident()
    try:
        yield
    finally:
        _handler, _owner = previous
