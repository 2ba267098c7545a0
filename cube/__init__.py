"""Cube: a small container orchestrator you can read, run and break.

The data path is visible from the package tree: an API (``cube.manager.api``) hands work
to the manager (``cube.manager``), which asks a scheduler (``cube.scheduler``) where to
place it and sends it to a worker (``cube.worker``), which starts it on a runtime
(``cube.runtime``: Docker containers or local processes).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cube")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
