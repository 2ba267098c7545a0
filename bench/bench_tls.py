"""What TLS costs: the same "hello" app on cube.http.Server, over HTTP and over HTTPS.

Two ways of asking, each over both, with certificates made by ``cube tls`` (cube.certs):

- **kept alive**: one client, one request after another on one connection (as the
  manager's liveness probe and watches ask): the cost of encrypting each request;
- **a new connection each time**: the cost of a TCP connection plus, over HTTPS, a
  full handshake (what a client that does not keep connections pays).

The server runs in its own process, so the client and the server do not share a GIL.
Run: ``python -m bench bench_tls``. Prints numbers and ratios; asserts nothing.
"""

from __future__ import annotations

import http.client
import multiprocessing
import tempfile
import time
from pathlib import Path

import bottle

from bench.common import header
from cube.certs import local_tls
from cube.http import Server
from cube.tls import ServerTLS, client_context

SECONDS = 2.0
ROUNDS = 3  # the best counts (the machine is shared)


def _serve(port_out: multiprocessing.Queue, tls: ServerTLS | None) -> None:
    app = bottle.Bottle()

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    server = Server(app, tls=tls)
    server.start()
    port_out.put(server.port)
    while True:
        time.sleep(3600)


def _rate(connect, *, keep: bool) -> float:
    """Requests per second, the best of ``ROUNDS``."""
    best = 0.0
    for _ in range(ROUNDS):
        conn, count = connect(), 0
        deadline = time.perf_counter() + SECONDS
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            if not keep:
                conn.close()
                conn = connect()
            conn.request("GET", "/health")
            conn.getresponse().read()
            count += 1
        conn.close()
        best = max(best, count / (time.perf_counter() - started))
    return best


def main() -> None:
    header("TLS: the same app over HTTP and HTTPS (requests/s, one client)")
    with tempfile.TemporaryDirectory() as scratch:
        made = local_tls(Path(scratch))
        context = client_context(str(made.ca))
        rates: dict[tuple[str, bool], float] = {}
        for scheme, tls in (("http", None), ("https", ServerTLS(made.cert, made.key))):
            ports: multiprocessing.Queue = multiprocessing.Queue()
            proc = multiprocessing.Process(target=_serve, args=(ports, tls), daemon=True)
            proc.start()
            try:
                port = ports.get(timeout=30)

                def connect(scheme=scheme, port=port) -> http.client.HTTPConnection:
                    if scheme == "http":
                        return http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    return http.client.HTTPSConnection(
                        "127.0.0.1", port, timeout=5, context=context
                    )

                for keep in (True, False):
                    rates[scheme, keep] = _rate(connect, keep=keep)
            finally:
                proc.terminate()
                proc.join(10)
    for keep, what in ((True, "kept alive"), (False, "new connection each time")):
        plain, secure = rates["http", keep], rates["https", keep]
        print(
            f"  {what:<26} http {plain:7.0f}/s  https {secure:7.0f}/s  "
            f"https/http {secure / plain:.2f}"
        )


if __name__ == "__main__":
    main()
