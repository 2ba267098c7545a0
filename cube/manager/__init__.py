"""The manager: places tasks on workers and keeps them healthy (manager.py), probes
their health (health.py), and serves its API (api.py)."""

from cube.manager.manager import Manager, open_manager

__all__ = ["Manager", "open_manager"]
