"""What the etcd tests share: a real etcd for the session, prefixes of their own, and
candidates for leadership as real processes (:mod:`etcd_contender`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from cube.etcd import EtcdClient, LocalEtcd, etcd_binary, prefix_end

ROOT = Path(__file__).parent.parent
REQUIRE_ETCD = os.environ.get("CUBE_REQUIRE_ETCD") == "1"


def why_no_etcd() -> str:
    """Empty when a real etcd can be had: CUBE_ETCD answers, or etcd is installed."""
    given = os.environ.get("CUBE_ETCD")
    if given:
        with EtcdClient(given) as client:
            if client.healthy():
                return ""
        return f"CUBE_ETCD={given} does not answer /health"
    if etcd_binary() is None:
        return "no etcd installed (scripts/etcd-up.sh installs Debian's etcd-server)"
    return ""


@contextlib.contextmanager
def session_etcd(directory: Path) -> Iterator[list[str]]:
    """CUBE_ETCD's endpoints, or a member started here for the whole session."""
    given = os.environ.get("CUBE_ETCD")
    if given:
        yield EtcdClient(given).endpoints
        return
    cluster = LocalEtcd.on_free_ports(directory).start()
    try:
        yield cluster.endpoints
    finally:
        cluster.remove()


def unique_prefix(what: str = "t") -> str:
    """A prefix no other test (or earlier run) uses."""
    return f"/cube-test/{what}-{uuid.uuid4().hex[:12]}"


def wipe(client: EtcdClient, prefix: str) -> None:
    with contextlib.suppress(Exception):
        client.delete(prefix, prefix_end(prefix))


class Contender:
    """``etcd_contender.py`` as a real process: campaigns, and while it leads writes
    fenced entries; says what it does as JSON lines in its log."""

    def __init__(self, endpoints: list[str], prefix: str, name: str, log: Path, ttl: int = 2):
        self.name, self.log = name, log
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tests/etcd_contender.py"),
                    ",".join(endpoints),
                    prefix,
                    name,
                    str(ttl),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def lines(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def events(self, kind: str) -> list[dict]:
        return [line for line in self.lines() if line.get("event") == kind]

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.send(signal.SIGCONT)
            self.send(signal.SIGKILL)
        self.proc.wait(timeout=10)
