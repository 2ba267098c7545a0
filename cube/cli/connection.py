"""How the client commands reach a running manager: a client that reads what earlier
commands wrote, client errors turned into messages a person can act on, and a task
found by a prefix of its ID.

With several managers on one etcd, two commands in a row may ask two managers; the
second must still see what the first wrote. So each command starts from the highest
``X-Cube-Revision`` an earlier one was answered with, kept in a small file, and leaves
the highest it is answered with for the next.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import click

from cube.client import CubeError, ManagerClient, Revision, Unauthorized, Unreachable
from cube.task import Task
from cube.text import printable


@contextlib.contextmanager
def talking_to(manager: str) -> Iterator[None]:
    """Turn client errors into messages a person can act on (exit code 1)."""
    try:
        yield
    except Unreachable:
        raise click.ClickException(
            f"cannot reach the manager at {manager}: is `cube manager` running on {manager}?"
            " (set --manager or CUBE_MANAGER to point elsewhere)"
        ) from None
    except Unauthorized:
        raise click.ClickException(
            f"the manager at {manager} wants a token: pass --token or set CUBE_TOKEN"
        ) from None
    except CubeError as exc:
        raise click.ClickException(exc.message) from None


def manager_client(manager: str, token: str | None) -> ManagerClient:
    """A client for ``manager`` that reads what earlier commands wrote, whichever manager
    they asked (several managers on etcd): it starts from the revision they were
    answered with, and leaves the highest it is answered with for the next command."""
    revision = Revision(_remembered())
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(lambda: _remember(revision.value))
    return ManagerClient(manager, token=token, timeout=10, revision=revision)


def _revision_file() -> Path:
    """Where the CLI keeps the highest ``X-Cube-Revision`` it was answered with:
    ``CUBE_STATE_DIR``, else the user's state directory (``XDG_STATE_HOME``)."""
    given = os.environ.get("CUBE_STATE_DIR")
    if given:
        return Path(given) / "revision"
    state = os.environ.get("XDG_STATE_HOME")
    return (Path(state) if state else Path.home() / ".local" / "state") / "cube" / "revision"


def _remembered() -> int:
    try:
        text = _revision_file().read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isascii() and text.isdigit() else 0


def _remember(revision: int) -> None:
    """Keep ``revision`` for the next command, if it is newer (a failure to write only
    costs that command a catch-up read)."""
    if revision <= _remembered():
        return
    path = _revision_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".revision-{os.getpid()}")
        scratch.write_text(f"{revision}\n")
        scratch.replace(path)
    except OSError as exc:
        logging.getLogger("cube").debug("could not keep the revision in %s: %s", path, exc)


def find_task(client: ManagerClient, prefix: str) -> Task:
    """The one task whose ID starts with ``prefix``, or a message saying why not."""
    matches = [t for t in client.tasks() if str(t.id).startswith(prefix.lower())]
    if not matches:
        raise click.ClickException(
            f"no task has an ID starting with {prefix!r} (see `cube status`)"
        )
    if len(matches) > 1:
        names = printable(", ".join(f"{t.id} ({t.name})" for t in matches[:5]))
        raise click.ClickException(
            f"{prefix!r} matches {len(matches)} tasks: {names}; give more of the ID"
        )
    return matches[0]
