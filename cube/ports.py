"""Free ports on loopback, for the processes Cube starts itself (a LocalCluster's
workers and manager, local etcd members) and for the tests and benchmarks.

A port is picked below the range the kernel hands out to outgoing connections
(``ip_local_port_range``). Binding port 0 gives one from inside that range, and in the
seconds before the process that was given it starts listening, any connection on the
machine may take it as its own local end; the process then fails with "address already
in use". A busy machine (a CI run, a hundred workers) makes that likely. Below the
range, only another listener can take it. Where the search starts is random, so that
processes picking ports at the same moment rarely try the same ones.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000  # below: the well-known and registered ports other software may expect


def free_ports(count: int = 1, consecutive: bool = False) -> list[int]:
    """``count`` ports free on 127.0.0.1 now (``consecutive``: one run of them)."""
    ceiling = _ephemeral_low()
    for _ in range(200):
        start = random.randrange(LOWEST, max(LOWEST + 1, ceiling - 4 * count))
        found: list[int] = []
        for port in range(start, ceiling):
            if free(port):
                found.append(port)
            elif consecutive:
                break
            if len(found) == count:
                return found
    raise RuntimeError(f"no {count} free ports below {ceiling}")


def free_port() -> int:
    return free_ports(1)[0]


def free(port: int) -> bool:
    """Whether ``port`` can be listened on at 127.0.0.1 now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; elsewhere, a guess
