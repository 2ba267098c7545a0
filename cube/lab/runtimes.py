"""Which runtime a notebook's tasks run on, said out loud, and how to choose another.

Every notebook starts with ``RUNTIME, IMAGE = pick_runtime()``. A learner should never
have to guess whether their tasks are containers or processes, nor learn from a README
they have not read that Docker was there to be had: the line printed says what runs,
why, and what else this machine offers. The choice, in order: the argument
(``pick_runtime("docker")``), else ``CUBE_RUNTIME``, else local processes (they run
everywhere, Binder included, and are what the tests run the notebooks on).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from cube.runtime import docker_available, resolve

RUNTIME_ENV = "CUBE_RUNTIME"
DEFAULT = "process"
#: the image each runtime runs in the notebooks: a program of Cube's own, or the small
#: test image scripts/docker-up.sh builds
IMAGES = {"process": "cube/echo", "docker": "cube/busybox"}


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str  # "process" or "docker"
    image: str
    why: str
    other: str  # what the other runtime would take, in a learner's words

    def __iter__(self) -> Iterator[str]:
        """``RUNTIME, IMAGE = pick_runtime()``."""
        return iter((self.runtime, self.image))

    def __str__(self) -> str:
        kind = "local processes" if self.runtime == "process" else "Docker containers"
        said = f"runtime: {self.runtime} ({self.why}): tasks run as {kind} of {self.image}"
        return f"{said}\n{self.other}"

    __repr__ = __str__


def pick_runtime(wanted: str | None = None, *, announce: bool = True) -> RuntimeChoice:
    """The runtime this notebook uses: ``wanted`` ("process", "docker" or "auto"), else
    ``CUBE_RUNTIME``, else processes. Prints what it chose unless ``announce`` is off."""
    source = "chosen in this cell" if wanted else ""
    if not wanted:
        wanted = os.environ.get(RUNTIME_ENV) or DEFAULT
        source = f"{RUNTIME_ENV}={wanted}" if RUNTIME_ENV in os.environ else "the default"
    runtime, why = resolve(wanted)
    if wanted == "auto":
        source = f"auto: {why}"
    choice = RuntimeChoice(runtime, IMAGES[runtime], source, _other(runtime))
    if announce:
        print(choice)
    return choice


def _other(runtime: str) -> str:
    if runtime == "docker":
        return 'For local processes instead: RUNTIME, IMAGE = pick_runtime("process")'
    ok, why = docker_available()
    if ok:
        return f'{why}: for containers, RUNTIME, IMAGE = pick_runtime("docker")'
    return f"Docker is not available here ({why}), so processes it is."
