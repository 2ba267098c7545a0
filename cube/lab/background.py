"""Work off the kernel's thread, for widgets.

An ipywidgets callback runs on the kernel's own thread: while it waits on a network
call, the kernel handles nothing else, not even the next click. So widgets hand their
calls to a :class:`Lane` (one background thread each, calls in order) and update
themselves from there when the answer comes, which ipywidgets supports: a widget's
state may be changed from any thread. :class:`Every` repeats a call on a timer thread,
for auto-refresh, without the kernel's event loop.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Lane:
    """One background thread running calls in the order given.

    :meth:`run` returns at once with a Future. ``key`` coalesces repeats: a call whose
    key is already waiting to run is not queued again (ten refresh clicks while the
    manager is slow make one refresh, not ten)."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._waiting: dict[str, Future[Any]] = {}
        self._pending: set[Future[Any]] = set()

    def run(self, call: Callable[[], Any], key: str | None = None) -> Future[Any]:
        with self._lock:
            if key is not None and key in self._waiting:
                return self._waiting[key]
            future: Future[Any] = Future()
            if key is not None:
                self._waiting[key] = future
            self._pending.add(future)

        def job() -> None:
            with self._lock:
                if key is not None:
                    self._waiting.pop(key, None)
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(call())
            except BaseException as exc:  # reported through the future, never raised here
                future.set_exception(exc)
            finally:
                with self._lock:
                    self._pending.discard(future)

        self._pool.submit(job)
        return future

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued or running (for code and tests that click and
        then want to read the result). True when idle within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return True
            for future in pending:
                try:
                    future.exception(timeout=max(0.0, deadline - time.monotonic()))
                except Exception:
                    return False
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Daemon:
    """A loop on a daemon thread, until :meth:`stop` (or ``keep_going()`` says no)."""

    def __init__(self, name: str, keep_going: Callable[[], bool]) -> None:
        self._keep_going = keep_going
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stopped.set()

    def _loop(self) -> None:  # pragma: no cover - each kind has its own
        raise NotImplementedError


class Every(_Daemon):
    """Call ``tick`` every ``interval`` seconds on a daemon thread until :meth:`stop`,
    or until ``keep_going()`` says no. ``tick`` is expected to return quickly (it only
    queues work on a :class:`Lane`)."""

    def __init__(
        self, interval: float, tick: Callable[[], Any], keep_going: Callable[[], bool]
    ) -> None:
        super().__init__("cube-refresh", keep_going)
        self.interval, self._tick = interval, tick
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            if not self._keep_going():
                return
            with contextlib.suppress(Exception):  # a widget shows its own errors
                self._tick()


class Follow(_Daemon):
    """Keep a panel current with blocking queries, on a daemon thread, until :meth:`stop`
    or ``keep_going()`` says no.

    ``ask(index)`` makes one blocking query (answering at once for index 0) and returns
    ``(data, index)``; ``show(data, index)`` updates the panel. Nothing is asked while
    ``skip()`` gives a reason (a paused manager: asking would only hang); a failed call
    is retried after ``pause`` seconds, with a fresh, non-blocking ask."""

    def __init__(
        self,
        ask: Callable[[int], tuple[Any, int]],
        show: Callable[[Any, int], Any],
        keep_going: Callable[[], bool],
        *,
        skip: Callable[[], str] = lambda: "",
        failed: Callable[[Exception], Any] = lambda exc: None,
        pause: float = 1.0,
    ) -> None:
        super().__init__("cube-follow", keep_going)
        self._ask, self._show = ask, show
        self._skip, self._failed, self.pause = skip, failed, pause
        self._thread.start()

    def _loop(self) -> None:
        index = 0
        while not self._stopped.is_set() and self._keep_going():
            why = self._skip()
            if why:
                self._failed(RuntimeError(why))
                index = 0
                self._stopped.wait(self.pause / 2)
                continue
            try:
                data, index = self._ask(index)
            except Exception as exc:  # shown by the panel; asked again in a moment
                self._failed(exc)
                index = 0
                self._stopped.wait(self.pause)
                continue
            if not self._stopped.is_set():
                with contextlib.suppress(Exception):
                    self._show(data, index)
