"""The echo service: the program the process runtime runs for ``cube/echo`` and
``cube/busybox``, so that tasks can run as plain local processes where there is no
Docker daemon (on Binder, for example).

- ``GET /`` answers 200 with a small JSON body naming the service and its process ID.
- ``GET /health`` answers 200 ``OK``.
- ``GET /healthfail`` answers 500 ``Internal server error``: a health check that always
  fails, to watch Cube restart a task.
- ``POST /`` with a JSON body such as ``{"Msg": "hello"}`` answers 200 with the same JSON,
  or 400 with a JSON error when the body is not JSON.
- Anything else is 404. With ``--no-healthfail`` (``cube/busybox``) ``/healthfail`` is 404
  too, like the Docker test image whose httpd serves only ``/`` and ``/health``.

The image tag ``cube/echo:bad-exit`` runs it with ``--crash-after 2``: the service exits
with code 1 about two seconds after it starts serving, to show what Cube does when a task
crashes.

It listens on ``--host`` and ``--port`` (0 picks a free port). With ``--ready-fd`` it
writes the port it got (or ``error: <why>``) as one line to that inherited pipe, so the
runtime learns the moment it is listening without polling. With ``--exit-file`` it
writes its exit code to that file as it exits, so a runtime that did not start it can
still tell a crash from a clean stop. SIGTERM makes it exit promptly with code 0. Each
request is logged as one line on stderr.

It imports only the standard library and is run as a script in isolated mode, so it
starts fast and does not depend on where Cube is installed. It listens and reports ready
*before* importing ``http.server``, which takes longer (about 90 ms here) than all the
rest of its start: connections that arrive meanwhile wait in the socket's backlog and
are answered a moment later, as with a socket handed over by systemd. Try it by hand
with ``python -m cube.runtime.echo --port 7777``.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType


class _Stop(BaseException):
    """Raised by a signal handler to leave ``serve_forever`` with an exit code. Not an
    Exception: a signal that lands while a request is handled would otherwise be
    caught as that request's error (socketserver's ``handle_error``) and the service
    would go on serving after SIGTERM."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def http_server(sock: socket.socket, *, healthfail: bool) -> object:
    """An HTTP server answering on ``sock``, which is already listening. The imports are
    here, after the ready signal, because they are the slow part of starting."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class EchoHandler(BaseHTTPRequestHandler):
        server_version = "cube-echo/1"

        def do_GET(self) -> None:
            if self.path == "/":
                self._send(200, {"Service": "cube/echo", "Pid": os.getpid()})
            elif self.path == "/health":
                self._send(200, "OK")
            elif self.path == "/healthfail" and healthfail:
                self._send(500, "Internal server error")
            else:
                self._not_found()

        def do_POST(self) -> None:
            if self.path != "/":
                self._not_found()
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                message = json.loads(body)
            except ValueError as exc:
                self._send(400, {"Error": f"the body is not JSON: {exc}"})
                return
            self._send(200, message)

        def _not_found(self) -> None:
            self._send(404, "404 page not found")

        do_PUT = do_PATCH = do_DELETE = _not_found

        def _send(self, status: int, body: object) -> None:
            """Text bodies go out as text/plain, anything else as JSON."""
            if isinstance(body, str):
                data, kind = f"{body}\n".encode(), "text/plain; charset=utf-8"
            else:
                data, kind = json.dumps(body).encode() + b"\n", "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(sock.getsockname(), EchoHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    return server


def _raise_stop(code: int) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Stop(code)

    return handler


def _bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} is already in use on {host}: pick another host port in "
            "PortBindings, or leave it empty to get any free port"
        )
    if exc.errno == errno.EACCES:
        return f"port {port} on {host} needs privileges: use a port above 1023"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _report(fd: int | None, line: str) -> None:
    """Tell the parent, through the inherited pipe, that we are ready (or why not)."""
    if fd is not None:
        try:
            os.write(fd, f"{line}\n".encode())
        except BrokenPipeError:
            pass  # the worker that started us is gone; its next life will adopt us
        finally:
            os.close(fd)


def _write_exit_file(path: str, code: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{code}\n")
    os.replace(tmp, path)


def serve(args: Options) -> int:
    """Listen, report the port, serve until SIGTERM (0) or the crash timer (1)."""
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as exc:
        why = _bind_error(args.host, args.port, exc)
        print(why, file=sys.stderr)
        _report(args.ready_fd, f"error: {why}")
        return 2
    host, port = sock.getsockname()[:2]
    try:
        signal.signal(signal.SIGTERM, _raise_stop(0))
        if args.crash_after:
            signal.signal(signal.SIGALRM, _raise_stop(1))
            signal.setitimer(signal.ITIMER_REAL, args.crash_after)
        print(f"cube/echo: listening on {host}:{port} (pid {os.getpid()})", file=sys.stderr)
        _report(args.ready_fd, str(port))
        http_server(sock, healthfail=args.healthfail).serve_forever()  # type: ignore[attr-defined]
    except _Stop as stop:
        print(f"cube/echo: exiting with code {stop.code}", file=sys.stderr)
        return stop.code
    finally:
        sock.close()
    return 0


class Options:
    """The command line. Parsed by hand: argparse costs about 9 ms to import, a quarter of
    the time from spawn to listening."""

    host = "127.0.0.1"
    port = 0
    ready_fd: int | None = None
    exit_file: str | None = None
    healthfail = True
    crash_after = 0.0


USAGE = (
    "usage: python -m cube.runtime.echo [--host H] [--port P (0: a free one)] "
    "[--ready-fd FD] [--exit-file PATH] [--no-healthfail] [--crash-after SECONDS]"
)
_CONVERT: dict[str, tuple[str, Callable[[str], object]]] = {
    "--host": ("host", str),
    "--port": ("port", int),
    "--ready-fd": ("ready_fd", int),
    "--exit-file": ("exit_file", str),
    "--crash-after": ("crash_after", float),
}


def parse_args(argv: list[str] | None = None) -> Options:
    options, words = Options(), list(sys.argv[1:] if argv is None else argv)
    while words:
        word = words.pop(0)
        if word == "--no-healthfail":
            options.healthfail = False
        elif word in _CONVERT and words:
            name, convert = _CONVERT[word]
            try:
                setattr(options, name, convert(words.pop(0)))
            except ValueError:
                raise SystemExit(f"{USAGE}\nbad value for {word}") from None
        else:
            raise SystemExit(f"{USAGE}\nunknown or incomplete option {word!r}")
    return options


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    code = serve(args)
    if args.exit_file:
        _write_exit_file(args.exit_file, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
