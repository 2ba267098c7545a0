"""Health checks and the restart policy.

A task with a ``HealthCheck`` path is probed at ``http://<worker host>:<host port><path>``;
anything but a 2xx answer within the timeout is a failure. The book probed every 60 s
with no timeout, counted only status 200, and left a task that stayed unhealthy after
its restarts running forever. Here a failed or unhealthy task is restarted after an
exponentially growing wait, and after ``limit`` restarts it is Failed for good.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class RestartPolicy:
    """Restart up to ``limit`` times, waiting ``base * 2**n`` seconds (at most ``cap``)
    before restart ``n + 1``."""

    limit: int = 3
    base: float = 1.0
    cap: float = 30.0

    def backoff(self, restarts_so_far: int) -> float:
        return min(self.cap, self.base * 2**restarts_so_far)


def probe(host: str, port: int, path: str, timeout: float) -> str:
    """Probe one task; returns "" when healthy, else what went wrong."""
    url = f"http://{host}:{port}{path}"
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return f"GET {url} failed: {type(exc).__name__}"
    if not 200 <= response.status_code < 300:
        return f"GET {url} answered {response.status_code}"
    return ""
