"""Stores: typed, shelve-like mappings from string keys to values, in memory or on disk.

Both kinds keep each value as its JSON wire form and hand out fresh copies, so a caller
can never change a stored task by mutating an object it got back (the book's in-memory
store shared pointers while its disk store did not).

:class:`DiskStore` sits on diskcache (SQLite underneath) with eviction switched off:
diskcache's default policy drops entries past a size limit, and a store that silently
forgets tasks is not a store. Values are JSON text, never pickles, so a store file can
be read with ``sqlite3`` and loading one runs no code.

Several threads, and several processes, may open the same DiskStore at once: SQLite
serialises the writes, so this is safe rather than refused. (Two *workers* sharing one
data directory is still a mistake; the worker guards against that with a lock file.)
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import diskcache

from cube.groupcommit import GroupCommit, fsync_file
from cube.text import printable
from cube.wire import decode_json

log = logging.getLogger(__name__)

T = TypeVar("T")

SYNC_MODES = ("each", "grouped", "never")  # when a disk store's writes are flushed


class StoreError(Exception):
    """A stored value that cannot be read back. Names the store and the key."""


class StoreFailed(Exception):
    """A store could not do what was asked now (unreachable, or it refused). Each
    backend's own errors derive from it (:class:`cube.etcd.EtcdError`), so that code
    above any store can handle them alike."""


class StoreFull(OSError):
    """The disk (or the database) is full: nothing was written. Answered 507."""

    http_status = 507


class Codec(Protocol[T]):
    """Turns values into JSON-able data and back (for example :class:`cube.task.Task`)."""

    def encode(self, value: T) -> Any: ...

    def decode(self, data: Any) -> T: ...


class WireCodec(Generic[T]):
    """For classes with ``to_wire()`` and a ``from_wire()`` classmethod (Task, TaskEvent)."""

    def __init__(self, cls: Any) -> None:
        self.cls = cls

    def encode(self, value: T) -> Any:
        if not isinstance(value, self.cls):
            raise TypeError(f"this store holds {self.cls.__name__}, not {type(value).__name__}")
        return value.to_wire()

    def decode(self, data: Any) -> T:
        return self.cls.from_wire(data)

    def decode_text(self, text: str) -> T:
        """Straight from the stored JSON text (wire types read it in one pass)."""
        return decode_json(self.cls, text, self.cls.__name__)


class JsonCodec:
    """Plain JSON values (strings, numbers, lists, dicts) stored as they are."""

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, data: Any) -> Any:
        return data


class Store(Generic[T]):
    """What every store offers. Subclasses implement the five ``_raw`` primitives."""

    name: str
    codec: Codec[T]

    def put(self, key: str, value: T) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        self._raw_put(str(key), json.dumps(self.codec.encode(value), separators=(",", ":")))

    def get(self, key: str) -> T:
        """The value under ``key``; :class:`KeyError` when absent, :class:`StoreError`
        when what is stored cannot be read."""
        return self._decode(str(key), self._raw_get(str(key)))

    def delete(self, key: str) -> None:
        """Remove ``key``; :class:`KeyError` when absent."""
        self._raw_delete(str(key))

    def keys(self) -> list[str]:
        return self._raw_keys()

    def first_keys(self, limit: int, newest: bool = False) -> list[str]:
        """Up to ``limit`` keys in key order (``newest``: from the other end), without
        reading the rest: with time-ordered keys, the oldest or newest entries."""
        return self._raw_first_keys(limit, newest)

    def list(self) -> list[T]:
        """Every readable value. An unreadable one is set aside (see :meth:`items`), so
        one bad record never hides the others."""
        return [value for _, value in self.items()]

    def items(self) -> list[tuple[str, T]]:
        """Every readable (key, value). A record that cannot be decoded is moved aside,
        kept as it was with the reason (:meth:`unreadable` lists them), and logged:
        never silently dropped, and never tried again on every listing."""
        out = []
        for key in self._raw_keys():
            try:
                out.append((key, self.get(key)))
            except KeyError:
                continue
            except StoreError as exc:
                if key not in self.unreadable():  # a pickle stays in place: once is enough
                    self._set_aside(key, str(exc))
        return out

    def unreadable(self) -> dict[str, str]:
        """Keys set aside because their records could not be read, with the reason."""
        return {key: entry["Error"] for key, entry in self._aside_items()}

    def _set_aside(self, key: str, why: str) -> None:
        try:
            raw: str | None = self._raw_get(key)
        except (KeyError, StoreError):
            raw = None  # not text (a pickle): left where it is, out of listings
        self._aside_put(key, {"Error": why, "Raw": raw})
        if raw is not None:
            self._raw_delete(key)
        log.warning("%s; set aside%s", printable(why), "" if raw is None else " with its text")

    def count(self) -> int:
        return len(self._raw_keys())

    def flush(self) -> None:
        """Return once every write made so far is durable: a no-op where each write is
        durable when it returns (see :class:`DiskStore` for where it is not)."""

    def close(self) -> None:
        """Release files. Using a closed store reopens it where the backend allows."""

    def _decode(self, key: str, text: str) -> T:
        try:
            decode_text = getattr(self.codec, "decode_text", None)
            if decode_text is not None:
                return decode_text(text)
            return self.codec.decode(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"{self.name}: key {key!r} holds an unreadable value: {exc}") from exc

    def __getitem__(self, key: str) -> T:
        return self.get(key)

    def __setitem__(self, key: str, value: T) -> None:
        self.put(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._raw_contains(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw_keys())

    def __len__(self) -> int:
        return self.count()

    def __enter__(self) -> Store[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- backend primitives
    def _raw_put(self, key: str, text: str) -> None:
        raise NotImplementedError

    def _raw_get(self, key: str) -> str:
        raise NotImplementedError

    def _raw_delete(self, key: str) -> None:
        raise NotImplementedError

    def _raw_keys(self) -> list[str]:
        raise NotImplementedError

    def _raw_contains(self, key: str) -> bool:
        raise NotImplementedError

    def _raw_first_keys(self, limit: int, newest: bool) -> list[str]:
        return sorted(self._raw_keys(), reverse=newest)[:limit]

    def _aside_put(self, key: str, entry: dict[str, Any]) -> None:
        raise NotImplementedError

    def _aside_items(self) -> list[tuple[str, dict[str, Any]]]:
        raise NotImplementedError


class MemoryStore(Store[T]):
    """A store that lives as long as the process: for tests, demos and ``--dbtype memory``."""

    def __init__(self, codec: Codec[T] | None = None, name: str = "memory") -> None:
        self.codec = codec or JsonCodec()  # type: ignore[assignment]
        self.name = name
        self._data: dict[str, str] = {}
        self._aside: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _raw_put(self, key: str, text: str) -> None:
        with self._lock:
            self._data[key] = text

    def _raw_get(self, key: str) -> str:
        with self._lock:
            return self._data[key]

    def _raw_delete(self, key: str) -> None:
        with self._lock:
            del self._data[key]

    def _raw_keys(self) -> list[str]:
        with self._lock:
            return list(self._data)

    def _raw_contains(self, key: str) -> bool:
        with self._lock:
            return key in self._data

    def _aside_put(self, key: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._aside[key] = entry

    def _aside_items(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self._aside.items())


class DiskStore(Store[T]):
    """A store in a directory, surviving restarts and SIGKILL.

    Every committed write survives the process: SQLite's write-ahead log is consistent.
    To survive a crash of the machine as well, a write must also be flushed to the disk,
    and ``sync`` says when:

    - ``"each"`` (the default): a ``put`` returns once SQLite has committed *and*
      flushed it (``synchronous=FULL``): one flush per write.
    - ``"grouped"``: a ``put`` commits without a flush, and :meth:`flush` makes every
      write so far durable with one flush of the log, shared by all who ask at once
      (:mod:`cube.groupcommit`). Whoever tells anyone of a write flushes first.
    - ``"never"``: for a store whose content can be made again from another (an index):
      the last writes may be lost with the machine, and whoever reads it makes good
      what is missing.
    """

    def __init__(
        self, directory: str | Path, codec: Codec[T] | None = None, *, sync: str = "each"
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
        self.codec = codec or JsonCodec()  # type: ignore[assignment]
        self.name = str(directory)
        Path(directory).mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(
            str(directory),
            disk=_TextOnlyDisk,
            eviction_policy="none",
            sqlite_synchronous=2 if sync == "each" else 1,  # FULL, or NORMAL
            statistics=False,
            tag_index=False,
        )
        log_file = Path(directory) / f"{diskcache.core.DBNAME}-wal"
        self.commits = GroupCommit(partial(fsync_file, log_file)) if sync == "grouped" else None
        self._aside_dir = Path(f"{directory}.unreadable")
        self._aside: diskcache.Cache | None = None

    def flush(self) -> None:
        if self.commits is not None:
            self.commits.wait()

    def _raw_put(self, key: str, text: str) -> None:
        try:
            self._cache.set(key, text)
        except (sqlite3.OperationalError, OSError) as exc:
            full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            if full or "full" in str(exc):
                raise StoreFull(f"cannot store in {self.name}: the disk is full ({exc})") from None
            raise
        if self.commits is not None:
            self.commits.wrote()

    def _raw_get(self, key: str) -> str:
        try:
            text = self._cache.get(key, default=_MISSING)
        except _ForeignValue as exc:
            raise StoreError(f"{self.name}: key {key!r} {exc}") from None
        if text is _MISSING:
            raise KeyError(key)
        if not isinstance(text, str):
            raise StoreError(f"{self.name}: key {key!r} holds a {type(text).__name__}, not JSON")
        return text

    def _raw_delete(self, key: str) -> None:
        if not self._cache.delete(key):
            raise KeyError(key)
        if self.commits is not None:
            self.commits.wrote()

    def _raw_keys(self) -> list[str]:
        return [key for key in self._cache.iterkeys() if isinstance(key, str)]

    def _raw_contains(self, key: str) -> bool:
        return key in self._cache

    def _raw_first_keys(self, limit: int, newest: bool) -> list[str]:
        keys = (k for k in self._cache.iterkeys(reverse=newest) if isinstance(k, str))
        return list(itertools.islice(keys, limit))

    def _aside_cache(self) -> diskcache.Cache:
        if self._aside is None:
            self._aside = diskcache.Cache(
                str(self._aside_dir), eviction_policy="none", sqlite_synchronous=2
            )
        return self._aside

    def _aside_put(self, key: str, entry: dict[str, Any]) -> None:
        self._aside_cache().set(key, json.dumps(entry))

    def _aside_items(self) -> list[tuple[str, dict[str, Any]]]:
        if self._aside is None and not self._aside_dir.is_dir():
            return []
        cache = self._aside_cache()
        return [(key, json.loads(cache[key])) for key in cache.iterkeys() if key in cache]

    def close(self) -> None:
        self._cache.close()
        if self._aside is not None:
            self._aside.close()


_MISSING = object()


class _ForeignValue(Exception):
    pass


class _TextOnlyDisk(diskcache.Disk):
    """Never unpickle: a pickle in a store file could run code when loaded."""

    def fetch(self, mode: int, filename: str, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            raise _ForeignValue("holds a pickled value, not JSON; refusing to unpickle it")
        return super().fetch(mode, filename, value, read)


def open_store(
    kind: str, directory: str | Path | None, codec: Codec[T], *, sync: str = "each"
) -> Store[T]:
    """``kind`` is ``"memory"`` or ``"persistent"`` (the CLI's ``--dbtype``); ``sync``:
    see :class:`DiskStore`."""
    if kind == "memory":
        return MemoryStore(codec, name=str(directory or "memory"))
    if kind == "persistent":
        if directory is None:
            raise ValueError("a persistent store needs a directory")
        return DiskStore(directory, codec, sync=sync)
    raise ValueError(f"unknown store kind {kind!r}: use 'memory' or 'persistent'")


class DirectoryLocked(RuntimeError):
    """Another live process owns this data directory."""


def lock_directory(directory: str | Path, owner: str) -> Any:
    """Take an exclusive lock on ``directory`` for this process's lifetime, failing fast
    when another process holds it (say, a second worker started with the same name).
    Returns the open lock file; the lock goes when it is closed or the process dies."""
    import fcntl
    import os

    Path(directory).mkdir(parents=True, exist_ok=True)
    handle = open(Path(directory) / "lock", "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DirectoryLocked(
            f"{owner}: {directory} is in use by {holder}; stop it first, or choose another "
            "--name or --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle
