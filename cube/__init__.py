"""Cube: a small container orchestrator you can read, run and break.

The data path is visible from the package tree: an API (``cube.manager.api``) hands work
to the manager (``cube.manager``), which asks a scheduler (``cube.scheduler``) where to
place it and sends it to a worker (``cube.worker``), which starts it on a runtime
(``cube.runtime``: Docker containers or local processes).
"""


def __getattr__(name: str) -> str:
    # The version is looked up on first use: importlib.metadata is slow to import, and
    # `cube status` should start quickly.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("cube")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0.0.0"
    raise AttributeError(f"module 'cube' has no attribute {name!r}")
