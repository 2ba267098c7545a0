"""A worker's liveness probe: one small GET on a kept-alive connection, short timeout.

The manager asks every worker ``/health`` every second, so what one probe costs is paid
all day: a plain ``http.client`` connection kept open costs a fraction of what a
``requests`` session does per call (measured in ``bench_idle``). Anything but a JSON
answer with status 200 is a failure the caller can name.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

from cube import tls
from cube.client import CubeError, NotFound, Unreachable


class Prober:
    """GETs for one worker, over one connection reopened after any error."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        parts = urlsplit(tls.base_url(url))
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        # over https, verified against CUBE_CACERT (made once: contexts are not cheap)
        self.context = tls.client_context() if parts.scheme == "https" else None
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def get(self, path: str) -> Any:
        """The JSON answer of ``GET path``; :class:`~cube.client.NotFound` on 404, and
        :class:`~cube.client.Unreachable` or :class:`~cube.client.CubeError` otherwise."""
        with self._lock:
            try:
                conn = self._conn or self._connect()
                self._conn = conn
                conn.request("GET", path, headers=self.headers)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close_locked()
                why = str(exc) or type(exc).__name__
                raise Unreachable(0, f"no answer to GET {path}: {why}") from None
            if response.status == 404:
                raise NotFound(404, f"GET {path}: no such route")
            if response.status != 200:
                raise CubeError(response.status, f"GET {path} answered {response.status}")
            try:
                return json.loads(body)
            except ValueError:
                raise CubeError(200, f"GET {path} did not answer JSON") from None

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def close_locked(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return http.client.HTTPSConnection(
            self.host, self.port, timeout=self.timeout, context=self.context
        )
