"""Health checks (the restart policy they lead to is the task's: :class:`cube.task.RestartPolicy`).

A task with a ``HealthCheck`` path is probed at ``http://<worker host>:<host port><path>``;
anything but a 2xx answer within the timeout is a failure. The book probed every 60 s
with no timeout, counted only status 200, and left a task that stayed unhealthy after
its restarts running forever. Here a failed or unhealthy task is restarted after an
exponentially growing wait, and after ``limit`` restarts it is Failed for good.
"""

from __future__ import annotations

import requests


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
