"""How Cube's servers take in requests: whole, in time, without tying up a thread.

cheroot (the server under :class:`cube.http.Server`) hands a connection to a pool thread
as soon as its socket is readable, and the thread then waits for the rest of the
request. A client that sends its headers a byte at a time holds that thread for as long
as it likes; twenty of them hold the whole pool, and the worker stops answering, even
``/health``. Here a request is gathered off the pool instead:

- the server's selector thread reads what has arrived (without blocking) into the
  connection's buffer, and hands the connection to the pool only once the buffer holds
  a whole request: its head, and as much body as ``Content-Length`` announced (bodies
  over the API's limit go at once: they are refused with 413 without being read);
- a request still incomplete ``request_timeout`` seconds after its first byte is
  answered 408, or 400 when its body stopped short of its ``Content-Length`` (nothing
  came for half the timeout, or the client closed its side); a chunked body is 411;
- after answering, a pool thread waits a few milliseconds for the next request on the
  same connection and serves it at once when it is whole (a client sending requests one
  after the other skips two hand-overs between threads), and each response leaves in
  one write.

Everything here leans on cheroot's documented extension points (``ConnectionClass``,
``process_conn``, the connection manager's expiry pass) and on the file-like interface
its request parser reads through.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
import time
from typing import Any

from cheroot import connections as cheroot_connections
from cheroot import server as cheroot_server
from cheroot.wsgi import Server as WSGIServer

from cube.messages import ErrorBody
from cube.wire import encode

HEAD_LIMIT = 64 * 1024
READ_CHUNK = 65536
BACKLOG = 1024  # connections the kernel queues before the server accepts them
IN_A_ROW = 100  # requests one connection may have served before others get a turn
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*([0-9]+)[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:.*chunked", re.I | re.M)
_EXPECT = re.compile(rb"^expect[ \t]*:[ \t]*100-continue", re.I | re.M)


class Reader:
    """A connection's input: a buffer filled from the socket, read by cheroot's parser.

    It knows where the request it holds ends, so the server can tell a whole request
    from a part of one. Reads the buffer cannot satisfy wait on the socket (with the
    server's socket timeout), as cheroot's own reader does."""

    def __init__(self, sock: socket.socket, max_body: int) -> None:
        self.sock, self.max_body = sock, max_body
        self.buffer = bytearray()
        self.bytes_read = 0
        self.closed = False
        self.started: float | None = None  # when the current request's first byte came
        self.last_data = 0.0
        self.left: int | None = None  # bytes of the current request not yet read
        self.head_end = -1
        self.refusal: tuple[int, str] | None = None
        self.expects_continue = False
        self.continued = False

    # ------------------------------------------------------------ gathering

    def fill(self) -> bool:
        """Take what the socket has without waiting. False when the peer closed."""
        if isinstance(self.sock, ssl.SSLSocket):
            return self._fill_tls()
        try:
            while True:
                data = self.sock.recv(READ_CHUNK, _DONTWAIT)
                if not data:
                    return False
                self._take(data)
                if len(data) < READ_CHUNK:
                    return True
        except (BlockingIOError, InterruptedError, TimeoutError):
            return True
        except OSError:
            return False

    def _fill_tls(self) -> bool:
        """:meth:`fill` over TLS, which takes no recv flags: the socket is made
        non-blocking for the while. Everything OpenSSL has decrypted is taken (the
        selector only sees the raw socket), and the first reads also complete the
        handshake. False when the peer closed, or spoke something other than TLS (a
        plain HTTP request is first told, in plain HTTP, to use https)."""
        timeout = self.sock.gettimeout()
        try:
            self.sock.settimeout(0.0)
            while True:
                data = self.sock.recv(READ_CHUNK)
                if not data:
                    return False
                self._take(data)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True
        except ssl.SSLError as exc:
            if exc.reason == "HTTP_REQUEST":
                _send_plain(self.sock, PLAIN_TO_TLS)
            return False
        except (OSError, ValueError):
            return False
        finally:
            with contextlib.suppress(OSError, ValueError):
                self.sock.settimeout(timeout)

    def _take(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.buffer and self.left is None:
            self.started = now
        self.buffer += data
        self.last_data = now
        self._examine()

    def _examine(self) -> None:
        """Find where the request in the buffer ends, once its head is there."""
        if self.left is not None or self.refusal is not None or not self.buffer:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > HEAD_LIMIT:
                self.refusal = (431, f"the request head is over {HEAD_LIMIT} bytes")
            return
        head = bytes(self.buffer[:end])
        self.head_end = end + 4
        self.expects_continue = _EXPECT.search(head) is not None
        if _CHUNKED.search(head):
            self.refusal = (411, "send the body with a Content-Length, not chunked")
            return
        lengths = _CONTENT_LENGTH.findall(head)
        length = int(lengths[0]) if len(lengths) == 1 else 0  # cheroot judges the odd ones
        self.left = self.head_end + (length if length <= self.max_body else 0)

    def whole(self) -> bool:
        """The buffer holds the whole current request."""
        return self.left is not None and len(self.buffer) >= self.left

    def has_data(self) -> bool:
        """cheroot asks this before waiting on the socket: true when a whole request
        (or one to refuse at once) is buffered, so a part of one waits in the selector."""
        return self.whole() or self.refusal is not None

    def in_body(self) -> bool:
        return self.left is not None and not self.whole()

    def overdue(self, now: float, timeout: float) -> bool:
        return self.started is not None and not self.whole() and now - self.started > timeout

    # ------------------------------------------------------------ cheroot's reads

    def read(self, size: int | None = None) -> bytes:
        if size is None or size < 0:
            while self._recv():
                pass
            size = len(self.buffer)
        while len(self.buffer) < size and self._recv():
            pass
        return self._consume(min(size, len(self.buffer)))

    def readline(self, size: int | None = None) -> bytes:
        limit = size if size is not None and size >= 0 else None
        while True:
            end = self.buffer.find(b"\n", 0, limit)
            if end >= 0:
                return self._consume(end + 1)
            if limit is not None and len(self.buffer) >= limit:
                return self._consume(limit)
            if not self._recv():
                return self._consume(len(self.buffer))

    def _recv(self) -> bool:
        """Wait for more from the socket (cheroot's parser needs it). False at EOF."""
        data = self.sock.recv(READ_CHUNK)
        if data:
            self._take(data)
        return bool(data)

    def _consume(self, n: int) -> bytes:
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        self.bytes_read += n
        if self.left is not None:
            self.left -= n
            if self.left <= 0:  # that request is read: what follows is the next one
                self.left, self.refusal, self.continued = None, None, False
                self.started = time.monotonic() if self.buffer else None
                self._examine()
        return data

    def close(self) -> None:
        self.closed = True


class Writer:
    """A connection's output, kept until the request is answered and sent in one go
    (cheroot would send the head and the body in two writes)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        self.bytes_written = 0
        self.skip_continue = False

    def write(self, data: bytes) -> int:
        if self.skip_continue and data == CONTINUE:
            return len(data)  # the server already told the client to go on
        self.pending += data
        return len(data)

    def flush(self) -> None:
        if self.pending:
            self.sock.sendall(self.pending)
            self.bytes_written += len(self.pending)
            self.pending.clear()

    def close(self) -> None:
        self.pending.clear()


class Connection(cheroot_server.HTTPConnection):
    """One client connection, read through a :class:`Reader`, written through a
    :class:`Writer`, serving back-to-back requests in the same pool thread."""

    def __init__(self, server: Any, sock: socket.socket, makefile: Any = None) -> None:
        super().__init__(server, sock, makefile or cheroot_server.MakeFile)
        self.rfile: Any = Reader(sock, server.max_body)
        self.wfile: Any = Writer(sock)
        if isinstance(sock, ssl.SSLSocket):  # the handshake counts against the deadline
            self.rfile.started = time.monotonic()

    def communicate(self) -> bool:
        for _ in range(IN_A_ROW):
            keep = super().communicate()
            try:
                self.wfile.flush()
            except OSError:
                return False
            self.wfile.skip_continue = False
            if not keep:
                return False
            ready = self._next_request(self.server.linger)
            if ready is not True:
                return ready is None  # None: still coming, the selector waits for it
        return True

    def _next_request(self, linger: float) -> bool | None:
        """True when the next request is here whole within ``linger`` seconds, None if
        not (yet), False when the client has gone."""
        reader = self.rfile
        deadline = time.monotonic() + linger
        while not reader.whole():
            left = deadline - time.monotonic()
            if reader.refusal is not None or left <= 0 or not _readable(self.socket, left):
                return None
            if not reader.fill():
                return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.wfile.flush()
        super().close()


def _readable(sock: socket.socket, timeout: float) -> bool:
    if not hasattr(select, "poll"):  # Windows
        return bool(select.select([sock], [], [], timeout)[0])
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


class _Connections(cheroot_connections.ConnectionManager):
    """cheroot's keep-alive manager, whose periodic pass also answers requests that
    are overdue."""

    def _expire(self, threshold: float) -> None:
        now = time.monotonic()
        server: GatedServer = self.server
        late = [
            (fd, conn)
            for fd, conn in self._selector.connections
            if conn is not server and conn.rfile.overdue(now, server.request_timeout)
        ]
        for fd, conn in late:
            self._selector.unregister(fd)
            server.refuse_late(conn, now)
        super()._expire(threshold)


class GatedServer(WSGIServer):
    """cheroot's WSGI server, handing its pool only whole requests."""

    ConnectionClass = Connection

    def __init__(
        self,
        *args: Any,
        request_timeout: float = 5.0,
        linger: float = 0.005,
        max_body: int = 1 << 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout, self.linger, self.max_body = request_timeout, linger, max_body
        self.expiration_interval = min(0.5, request_timeout / 4)
        self.keep_alive_conn_limit = 256
        # cheroot listens with a backlog of 5: a burst of clients connecting at once
        # (a manager's whole fleet, a thousand watchers) would have its SYNs dropped and
        # retried a second later, and later still; the kernel may queue this many
        self.request_queue_size = BACKLOG

    def prepare(self) -> None:
        super().prepare()
        plain, self._connections = self._connections, _Connections(self)
        plain._selector.close()

    def process_conn(self, conn: Connection) -> None:
        """Called when a connection has something to read (or a new one came): pass
        it to the pool once a whole request is buffered, else wait for more."""
        reader = conn.rfile
        alive = reader.has_data() or reader.fill()
        if reader.refusal is not None:
            self.refuse(conn, *reader.refusal)
        elif reader.whole():
            super().process_conn(conn)
        elif not alive:
            if reader.in_body():
                self.refuse(conn, 400, _short(reader))
            else:
                conn.close()
        else:
            if reader.in_body() and reader.expects_continue and not reader.continued:
                reader.continued = conn.wfile.skip_continue = True
                _send(conn, CONTINUE)
            self.put_conn(conn)  # parked in the selector until more arrives

    def refuse_late(self, conn: Connection, now: float) -> None:
        reader = conn.rfile
        if reader.in_body() and now - reader.last_data >= self.request_timeout / 2:
            self.refuse(conn, 400, _short(reader))
        else:
            self.refuse(conn, 408, f"the request did not arrive within {self.request_timeout:g} s")

    def refuse(self, conn: Connection, status: int, message: str) -> None:
        """Answer with a Cube error body and close: the request is not read further."""
        _send(conn, _plain_answer(status, message))
        conn.close()


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    411: "Length Required",
    431: "Request Header Fields Too Large",
}


def _short(reader: Reader) -> str:
    announced = (reader.left or 0) - reader.head_end
    got = len(reader.buffer) - reader.head_end
    return f"the body is shorter than its Content-Length: {got} of {announced} bytes arrived"


def _plain_answer(status: int, message: str) -> bytes:
    body = encode(ErrorBody(http_status_code=status, message=message))
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json"
        f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


PLAIN_TO_TLS = _plain_answer(400, "this server speaks HTTPS only: ask https:// (see cube tls)")


def _send_plain(sock: ssl.SSLSocket, data: bytes) -> None:
    """Bytes past TLS, on the socket under it: the answer to a peer that never spoke it."""
    with contextlib.suppress(OSError):
        socket.socket.send(sock, data)


def _send(conn: Connection, data: bytes) -> None:
    """Send without waiting (over TLS, which takes no flags, on a non-blocking socket)."""
    sock = conn.socket
    with contextlib.suppress(OSError, ValueError):
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(0.0)
            sock.send(data)
        else:
            sock.send(data, _DONTWAIT)
