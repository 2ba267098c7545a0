"""A nemesis for stores: the process dies in the middle of writing a value.

:func:`cut_at` runs a call (a store's ``put``) and kills it at its ``n``-th file
operation inside one folder, the way a crash would: a file opened for writing has been
created (or emptied) and nothing written yet; a ``write`` got half its bytes to disk;
a rename or replace never happened. Everything after the cut is lost. The checker then
opens the folder with a fresh store, as a restarted process would, and looks at what a
crash at that moment left behind.

It works by standing in for ``open`` (``builtins.open`` and ``io.open``, which
``pathlib`` uses), ``os.replace`` and ``os.rename`` while the call runs, for files in
that folder only; every other file of the process is untouched.
"""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class PowerCut(BaseException):
    """The process died here. A BaseException, so ``except Exception`` in the code
    under test does not swallow it, any more than it could swallow a real crash."""


class _Counter:
    def __init__(self, cut: int) -> None:
        self.cut, self.seen, self.fired = cut, 0, False

    def tick(self, what: str) -> bool:
        """Count an operation; True when this one is where the power goes out."""
        if self.fired:
            raise PowerCut(f"after the cut: {what}")
        self.seen += 1
        if self.seen == self.cut:
            self.fired = True
            return True
        return False


class _File:
    """A file opened for writing: each write reaches the disk at once, as the kernel's
    page cache would keep it through a process crash; the write that is cut gets half."""

    def __init__(self, real: Any, counter: _Counter) -> None:
        self._real, self._counter = real, counter

    def write(self, data: Any) -> int:
        if self._counter.tick(f"write to {self._real.name}"):
            self._real.write(data[: len(data) // 2])
            self._real.flush()
            self._real.close()
            raise PowerCut(f"during a write to {self._real.name}")
        written = self._real.write(data)
        self._real.flush()
        return written

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextmanager
def _standing_in(folder: Path, counter: _Counter) -> Iterator[None]:
    real_open, real_replace, real_rename = builtins.open, os.replace, os.rename
    inside = str(folder.resolve()) + os.sep

    def ours(path: Any) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(inside)
        except TypeError:
            return False  # a file descriptor, not a path

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        writing = any(c in mode for c in "wax+")
        if not (writing and ours(file)):
            return real_open(file, mode, *args, **kwargs)
        if counter.tick(f"open {file}"):
            real_open(file, mode, *args, **kwargs).close()  # created or emptied, no more
            raise PowerCut(f"just after opening {file}")
        return _File(real_open(file, mode, *args, **kwargs), counter)

    def moving(real: Callable[..., Any]) -> Callable[..., Any]:
        def move(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            if (ours(src) or ours(dst)) and counter.tick(f"rename {src}"):
                raise PowerCut(f"before renaming {src}")
            return real(src, dst, *args, **kwargs)

        return move

    builtins.open = io.open = fake_open  # type: ignore[assignment]
    os.replace, os.rename = moving(real_replace), moving(real_rename)
    try:
        yield
    finally:
        builtins.open = io.open = real_open
        os.replace, os.rename = real_replace, real_rename


def cut_at(n: int, folder: Path, call: Callable[[], Any]) -> bool:
    """Run ``call`` with the power cut at its ``n``-th file operation in ``folder``.
    True if the cut happened; False if ``call`` finished with fewer operations."""
    counter = _Counter(n)
    try:
        with _standing_in(folder, counter):
            call()
    except PowerCut:
        return True
    return counter.fired
