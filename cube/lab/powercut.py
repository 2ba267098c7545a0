"""A nemesis for stores: the power goes out, and the kernel's page cache with it.

A write does not reach the disk when ``write`` returns: it reaches the kernel's page
cache, which writes it back when it likes. Only ``fsync`` on a file makes its content
durable, and only ``fsync`` on a directory makes its entries durable (a file created,
renamed or removed in it). A process crash keeps the page cache; a power cut empties it.

:func:`record` runs a call (a store's ``put``) on a real folder and notes each file
operation it makes there, in order: opens for writing, renames, removals, and fsyncs of
a file or of the folder (with the file's content at that moment). :func:`aftermaths`
then replays that log against a model of the page cache and returns every state the
folder could be found in after a crash at any point: the power cut after each operation
(only what was fsynced survives), and the process crash in the middle of each file's
writes (the page cache survives: the file is empty just after its open, or half
written). The checker opens each state with a fresh store, as a rebooted machine would.

Why this way, and not another:

- Python's audit hooks (:func:`sys.addaudithook`) see every ``open``, whatever called
  it: ``builtins.open``, IPython's own ``open`` in a notebook cell (which is not
  ``builtins.open``, so standing in for that misses it), ``pathlib``, ``io.FileIO``,
  ``os.open``; and every ``os.rename``/``os.replace``/``os.remove``. They cannot be
  fooled by the way the code writes.
- No audit event exists for ``fsync``, so ``os.fsync``, ``os.fdatasync`` and
  ``os.sync`` are stood in for at the ``os`` module, during the call only. Code that
  took ``fsync`` out of ``os`` before the check (``from os import fsync``) is seen as
  never syncing: the check can fail such a store wrongly, never pass a wrong one.
- Tracing the system calls (strace) would see fsync however it is called, but needs
  the learner's class in another process and ptrace rights that Binder's containers do
  not always grant; a FUSE file system needs privileges too.

An audit hook cannot be removed once added, so one is added per process, on first use,
and does nothing (one comparison) while no recording is under way.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
Files = dict[str, bytes]  # a folder's files: name -> content


@dataclass(frozen=True)
class Op:
    """One file operation in the folder: ``kind`` is open, rename, remove, fsync,
    fsync-dir or sync; ``name`` (and ``to``) are names inside the folder."""

    kind: str
    name: str = ""
    to: str = ""
    truncate: bool = False
    content: bytes = b""  # fsync: the file's content when it was synced

    def describe(self) -> str:
        if self.kind == "rename":
            return f"rename {self.name} to {self.to}"
        if self.kind == "fsync-dir":
            return "fsync the folder"
        if self.kind == "sync":
            return "os.sync()"
        return f"{self.kind} {self.name}"


@dataclass
class Recording:
    """What a call did in ``folder``: the files before it, its operations, and the
    files after it (what a crash that keeps the page cache would find)."""

    folder: Path
    before: Files = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    after: Files = field(default_factory=dict)

    def did(self, kind: str) -> bool:
        return any(op.kind == kind for op in self.ops)


@dataclass(frozen=True)
class Aftermath:
    """A state the folder may be in after a crash, and the story of how."""

    story: str
    files: Files
    finished: bool  # the call had returned: what it wrote must be there


def snapshot(folder: Path) -> Files:
    """The regular files directly in ``folder``, and their contents."""
    out: Files = {}
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            with open(entry.path, "rb") as f:
                out[entry.name] = f.read()
    return out


def restore(files: Files, folder: Path) -> None:
    """Make ``folder`` hold exactly ``files`` (a state after a crash)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)


# --------------------------------------------------------------------- recording

_active: list[_Recorder] = []  # the recording under way, if any (one at a time)
_hooked = threading.Lock()
_installed: list[bool] = []


class _Recorder:
    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        folder = recording.folder
        # the folder as given and as resolved (a temporary folder may be under a symlink)
        self.insides = {str(p) + os.sep for p in (folder.absolute(), folder.resolve())}
        self.busy = threading.local()  # our own reads must not be recorded

    def name(self, path: Any) -> str | None:
        """The name inside the folder of ``path`` (None: elsewhere, or a descriptor)."""
        try:
            full = os.path.abspath(os.fsdecode(os.fspath(path)))
        except TypeError:
            return None
        for inside in self.insides:
            if full + os.sep == inside:
                return "."
            if full.startswith(inside):
                return full[len(inside) :]
        return None

    def event(self, event: str, args: tuple[Any, ...]) -> None:
        if getattr(self.busy, "on", False):
            return
        if event == "open":
            name, flags = self.name(args[0]), args[2]
            if name and name != "." and isinstance(flags, int) and flags & WRITING:
                self.add(Op("open", name, truncate=bool(flags & os.O_TRUNC)))
        elif event == "os.rename":
            src, dst = self.name(args[0]), self.name(args[1])
            if src or dst:
                self.add(Op("rename", src or "(elsewhere)", dst or "(elsewhere)"))
        elif event == "os.remove" and (name := self.name(args[0])):
            self.add(Op("remove", name))

    def synced(self, fd: Any) -> None:
        """An fsync of ``fd``: a file (note its content now) or the folder. Which one is
        found by its inode, which works on every system (no /proc on macOS)."""
        self.busy.on = True
        try:
            name = _named(self.recording.folder, os.fstat(int(fd)))
            if name == ".":
                self.add(Op("fsync-dir"))
            elif name:
                content = (self.recording.folder / name).read_bytes()
                self.add(Op("fsync", name, content=content))
        except (OSError, TypeError, ValueError):
            return  # a descriptor gone, or nothing of the folder's
        finally:
            self.busy.on = False

    def add(self, op: Op) -> None:
        self.recording.ops.append(op)


def _named(folder: Path, seen: os.stat_result) -> str | None:
    """The name in ``folder`` of the file with ``seen``'s inode ("." for the folder)."""
    here = os.stat(folder)
    if (seen.st_dev, seen.st_ino) == (here.st_dev, here.st_ino):
        return "."
    for entry in os.scandir(folder):
        mine = os.stat(entry.path, follow_symlinks=False)  # st_ino is 0 in scandir on Windows
        if (seen.st_dev, seen.st_ino) == (mine.st_dev, mine.st_ino):
            return entry.name
    return None


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _active and event in ("open", "os.rename", "os.remove"):
        _active[0].event(event, args)


def _install_hook() -> None:
    with _hooked:
        if not _installed:
            sys.addaudithook(_hook)
            _installed.append(True)


@contextmanager
def _syncs_seen(recorder: _Recorder) -> Iterator[None]:
    """``os.fsync``, ``os.fdatasync`` and ``os.sync`` noted, for the block only."""
    real = {name: getattr(os, name) for name in ("fsync", "fdatasync", "sync") if hasattr(os, name)}

    def syncing(name: str) -> Callable[..., Any]:
        def sync(*args: Any) -> Any:
            result = real[name](*args)
            if name == "sync":
                recorder.add(Op("sync"))
            else:
                fd = args[0]
                recorder.synced(fd if isinstance(fd, int) else fd.fileno())
            return result

        return sync

    for name in real:
        setattr(os, name, syncing(name))
    try:
        yield
    finally:
        for name, function in real.items():
            setattr(os, name, function)


def record(folder: Path, call: Callable[[], Any]) -> Recording:
    """Run ``call`` and note what it did in ``folder``. Exceptions from ``call`` pass
    through, after the recording is complete."""
    _install_hook()
    recording = Recording(folder, before=snapshot(folder))
    recorder = _Recorder(recording)
    _active.append(recorder)
    try:
        with _syncs_seen(recorder):
            call()
    finally:
        _active.remove(recorder)
        recording.after = snapshot(folder)
    return recording


# ----------------------------------------------------------------------- replay


@dataclass
class _Disk:
    """The page-cache model: names now, and what a power cut would leave.

    Each file is an id; ``names`` maps the folder's entries to ids as the process sees
    them, ``durable_names`` as they were at the folder's last fsync; ``durable`` holds
    each id's content at its last fsync (a file never synced has none: empty)."""

    names: dict[str, int]
    durable_names: dict[str, int]
    durable: dict[int, bytes]
    next_id: int

    @classmethod
    def start(cls, files: Files) -> _Disk:
        ids = {name: i for i, name in enumerate(files)}
        content = {i: files[name] for name, i in ids.items()}
        return cls(dict(ids), dict(ids), content, len(ids))

    def apply(self, op: Op, current: Files) -> None:
        if op.kind == "open" and op.name not in self.names:
            self.names[op.name] = self.next_id
            self.next_id += 1
        elif op.kind == "rename" and op.name in self.names:
            moved = self.names.pop(op.name)
            if op.to != "(elsewhere)":
                self.names[op.to] = moved
        elif op.kind == "remove":
            self.names.pop(op.name, None)
        elif op.kind == "fsync" and op.name in self.names:
            self.durable[self.names[op.name]] = op.content
        elif op.kind == "fsync-dir":
            self.durable_names = dict(self.names)
        elif op.kind == "sync":
            self.durable_names = dict(self.names)
            for name, i in self.names.items():
                self.durable[i] = current.get(name, b"")

    def after_power_cut(self) -> Files:
        return {name: self.durable.get(i, b"") for name, i in self.durable_names.items()}


def aftermaths(recording: Recording) -> list[Aftermath]:
    """Every state a crash during (or just after) the recorded call could leave."""
    out: list[Aftermath] = []
    disk = _Disk.start(recording.before)
    ops = recording.ops
    for n, op in enumerate(ops):
        disk.apply(op, recording.after)
        if n + 1 < len(ops):
            story = f"the power went out after «{op.describe()}» (operation {n + 1})"
            out.append(Aftermath(story, disk.after_power_cut(), finished=False))
    out.append(
        Aftermath(
            "the power went out just after put returned", disk.after_power_cut(), finished=True
        )
    )
    out += _torn(recording)
    unique: dict[tuple[object, ...], Aftermath] = {}
    for state in out:
        unique.setdefault((state.finished, *sorted(state.files.items())), state)
    return list(unique.values())


def _torn(recording: Recording) -> list[Aftermath]:
    """The process (not the power) dies: the page cache keeps what it was given. Before
    each operation, the files are as the process saw them then; while a file is being
    written, it is empty just after its open, then half written."""
    out = []
    ops = recording.ops
    for i, op in enumerate(ops):
        seen = _before_open(recording, op)
        out.append(Aftermath(f"the process crashed before «{op.describe()}»", seen, False))
        if op.kind != "open":
            continue
        final = recording.after.get(_final_name(ops[i + 1 :], op.name), b"")
        if op.truncate or op.name not in seen:
            emptied = {**seen, op.name: b""}
            story = f"the process crashed just after opening {op.name} for writing"
            out.append(Aftermath(story, emptied, finished=False))
        half = {**seen, op.name: final[: len(final) // 2]}
        story = f"the process crashed half way through writing {op.name}"
        out.append(Aftermath(story, half, finished=False))
    return out


def _before_open(recording: Recording, op: Op) -> Files:
    """The files as the process saw them when ``op`` began (the page cache intact):
    each file opened earlier holds what it finally held, under its name of then."""
    files = dict(recording.before)
    ops = recording.ops
    for i, earlier in enumerate(ops):
        if earlier is op:
            break
        if earlier.kind == "open":
            final = _final_name(ops[i + 1 :], earlier.name)
            files[earlier.name] = recording.after.get(final, b"")
        elif earlier.kind == "rename" and earlier.name in files:
            content = files.pop(earlier.name)
            if earlier.to != "(elsewhere)":
                files[earlier.to] = content
        elif earlier.kind == "remove":
            files.pop(earlier.name, None)
    return files


def _final_name(later: list[Op], name: str) -> str:
    """The name a file called ``name`` ends up with, following ``later`` renames."""
    for op in later:
        if op.kind == "rename" and op.name == name:
            name = op.to
        elif op.kind == "remove" and op.name == name:
            return ""
    return name
