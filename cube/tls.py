"""TLS between Cube's components: a local certificate authority, certificates, and the
settings that turn TLS on.

TLS is off by default, so a laptop, a notebook or Binder needs nothing. It is turned on
the way Nomad's agents and CLI take theirs, by three settings (environment variables,
read by every component and client it starts):

- ``CUBE_TLS_CERT`` and ``CUBE_TLS_KEY``: the certificate and key a server presents
  (``cube worker``, ``cube manager``);
- ``CUBE_CACERT``: the CA file every client verifies servers against (the CLI, the
  manager's clients of its workers, its liveness probe). With it set, an address given
  without a scheme (``127.0.0.1:5556``) means ``https://``.

The certificates can come from :mod:`cube.certs` (``cube tls ca create`` and ``cube tls
cert create``), or from any CA whose files OpenSSL reads.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cheroot.ssl.builtin import BuiltinSSLAdapter

CERT_ENV = "CUBE_TLS_CERT"
KEY_ENV = "CUBE_TLS_KEY"
CA_ENV = "CUBE_CACERT"


@dataclass(frozen=True)
class ServerTLS:
    """What a server needs to speak TLS: its certificate (with any chain) and key."""

    cert: Path
    key: Path

    @classmethod
    def from_env(cls) -> ServerTLS | None:
        """The server's TLS from ``CUBE_TLS_CERT``/``CUBE_TLS_KEY``, or None (plain
        HTTP). One without the other is a mistake, said at once rather than served."""
        cert, key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
        if not cert and not key:
            return None
        if not (cert and key):
            missing = KEY_ENV if cert else CERT_ENV
            raise ValueError(f"TLS needs both {CERT_ENV} and {KEY_ENV}: {missing} is not set")
        return cls(Path(cert), Path(key))

    def adapter(self) -> LazyHandshakeAdapter:
        return LazyHandshakeAdapter(str(self.cert), str(self.key))


def ca_file() -> str | None:
    """The CA file clients verify servers against (``CUBE_CACERT``), or None."""
    return os.environ.get(CA_ENV) or None


def scheme() -> str:
    """The scheme of an address given without one: https once a CA is configured."""
    return "https" if ca_file() else "http"


def base_url(address: str) -> str:
    """``address`` as a URL: ``host:port`` gets :func:`scheme`, a URL stays as it is."""
    return address if "://" in address else f"{scheme()}://{address}"


def client_context(ca: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and host name against
    ``ca`` (default: ``CUBE_CACERT``, else the system's roots)."""
    context = ssl.create_default_context(cafile=ca or ca_file())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class LazyHandshakeAdapter(BuiltinSSLAdapter):
    """cheroot's builtin TLS, with the handshake left to the connection's first reads.

    cheroot's own adapter shakes hands in the thread that accepts connections, waiting
    up to the socket timeout: one client that connects and says nothing would hold up
    every other connection for that long. Here the accepted socket is wrapped without a
    handshake; OpenSSL completes it inside the first non-blocking reads, which
    :mod:`cube.connections` makes as data arrives, under the same deadline as a slow
    request."""

    def __init__(self, certificate: str, private_key: str) -> None:
        super().__init__(certificate, private_key)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2

    def wrap(self, sock: Any) -> tuple[ssl.SSLSocket, dict[str, str]]:
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, {"HTTPS": "on", "wsgi.url_scheme": "https"}
