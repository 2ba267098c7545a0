"""A leader's epoch, and the proof that a manager gave it.

With several managers on etcd, one leads, and every order it sends a worker says its
**epoch**, so that a worker can refuse the orders of a leader that was deposed. A
worker must therefore believe an epoch only when it comes from a manager: a number
anyone can write into a header would let anyone (any local process, anyone holding the
API token) raise a worker's epoch past the real leader's and wedge it for good.

**The proof.** Managers and workers share a *leader secret* (a file of random bytes,
made by ``cube up`` or by hand, read by ``cube manager --leader-secret`` and ``cube
worker --leader-secret``). The leader signs its stamp with it, an HMAC-SHA256 over the
store's series, the series' birth time and the epoch, and sends the stamp with every
order (``X-Cube-Epoch``, ``X-Cube-Epoch-Proof``); a worker checks the signature before
it believes the epoch. We chose a signed epoch over mutual TLS because it works as it is
on loopback, on Binder and behind any proxy, with no certificates to issue, renew and
pin: one file, the standard library's ``hmac`` and ``secrets``, nothing hand-made. (An
asymmetric signature, managers signing with a private key and workers checking with
the public one, would keep a worker that was taken over from ordering the others; it
needs a new dependency. With a shared secret, keep its file readable by its owner
only, on managers and workers alike.) The secret never travels, but the proof proves
the *epoch*, not the request: like the bearer token, whoever can read the traffic could
reuse it for orders of their own at that epoch, though never to move a worker past the
real leader. Put TLS in front where the network is not trusted.

**The series.** Epochs are etcd revisions, so they belong to one etcd: a fresh etcd
starts counting again from 1. Each etcd a cluster uses gets a *series* when a manager
first leads on it (a random ID and its birth time, written once, see
:mod:`cube.etcd.series`), and a stamp is ordered by ``(born, series, epoch)``: a worker
that followed epoch 186 of the old etcd's series follows epoch 3 of a newer series as
soon as a proven stamp of it comes, and an old series' stamp replayed later is older.
(etcd's own cluster ID would not do: etcd derives it from the members' names and
addresses, so an etcd started again, empty, with the same flags has the same ID.)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = "X-Cube-Epoch"
PROOF_HEADER = "X-Cube-Epoch-Proof"
MAX_EPOCH = (1 << 63) - 1  # etcd revisions are int64
MAX_BORN = 10**15  # milliseconds since 1970: past the year 33000
SECRET_BYTES = 32
_PROOF = re.compile(r"([0-9a-f]{16}):([0-9]{1,15}):([A-Za-z0-9_-]{43})")
_CONTEXT = b"cube leader epoch v1"


class BadEpoch(ValueError):
    """The headers are not an epoch and its proof (400)."""

    http_status = 400

    def __init__(self, name: str, text: str, rule: str) -> None:
        super().__init__(f"{name} must be {rule}, not {text[:60]!r}")


class Unproven(ValueError):
    """An epoch this worker cannot believe: no proof, a proof that does not check, or
    no secret to check it with (403). Nothing is stored."""

    http_status = 403


@dataclass(frozen=True, order=True)
class Stamp:
    """A leader's epoch within a series, with its proof. Ordered by birth of the series,
    then series, then epoch; the proof is not compared."""

    born: int
    series: str
    epoch: int
    mac: str = field(default="", compare=False)

    def headers(self) -> dict[str, str]:
        return {HEADER: str(self.epoch), PROOF_HEADER: f"{self.series}:{self.born}:{self.mac}"}

    def describe(self) -> str:
        return f"epoch {self.epoch} of series {self.series}"

    def to_json(self) -> dict[str, Any]:
        return {"Epoch": self.epoch, "Series": self.series, "Born": self.born, "Proof": self.mac}

    @classmethod
    def from_json(cls, data: Any) -> Stamp:
        """The stamp stored as :meth:`to_json`; ValueError for anything else."""
        if not isinstance(data, dict):
            raise ValueError(f"not a stamp: {data!r:.80}")
        epoch, born, series, mac = (data.get(k) for k in ("Epoch", "Born", "Series", "Proof"))
        text = f"{series}:{born}:{mac}"
        if not isinstance(epoch, int) or not isinstance(born, int) or not _PROOF.fullmatch(text):
            raise ValueError(f"not a stamp: {data!r:.80}")
        return cls(born, str(series), epoch, str(mac))


def _number(name: str, text: str, limit: int) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(limit))):
        raise BadEpoch(name, text, f"a whole number from 1 to {limit}")
    value = int(text)
    if not 0 < value <= limit:
        raise BadEpoch(name, text, f"a whole number from 1 to {limit}")
    return value


def read(epoch: str | None, proof: str | None) -> Stamp | None:
    """The stamp two headers carry (unchecked), or None when neither is there. Plain
    ASCII only, so what is checked is what was sent: 400 for anything else, 403 for an
    epoch without a proof."""
    if epoch is None and proof is None:
        return None
    if epoch is None:
        raise BadEpoch(HEADER, "", f"sent with {PROOF_HEADER}")
    number = _number(HEADER, epoch, MAX_EPOCH)
    if proof is None:
        raise Unproven(
            f"{HEADER} {number} comes without {PROOF_HEADER}: only a leading manager's "
            "signed epoch is believed"
        )
    found = _PROOF.fullmatch(proof) if proof.isascii() else None
    if found is None:
        raise BadEpoch(PROOF_HEADER, proof, "SERIES:BORN:SIGNATURE as a leading manager sends it")
    series, born, mac = found.groups()
    return Stamp(_number(PROOF_HEADER, born, MAX_BORN), series, number, mac)


class LeaderSecret:
    """The secret managers sign their epochs with, and workers check them with."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError(f"a leader secret needs at least 16 bytes, not {len(key)}")
        self._key = key

    @classmethod
    def load(cls, path: str | Path) -> LeaderSecret:
        """Read a secret file (its bytes, surrounding whitespace left out)."""
        return cls(Path(path).read_bytes().strip())

    @staticmethod
    def create(path: str | Path) -> Path:
        """Write a new random secret at ``path`` (readable by its owner only), unless one
        is there already."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(SECRET_BYTES) + "\n")
        return path

    def sign(self, born: int, series: str, epoch: int) -> Stamp:
        return Stamp(born, series, epoch, self._mac(born, series, epoch))

    def proves(self, stamp: Stamp) -> bool:
        """The stamp was signed with this secret (compared in constant time)."""
        expected = self._mac(stamp.born, stamp.series, stamp.epoch)
        return hmac.compare_digest(expected.encode(), stamp.mac.encode())

    def check(self, stamp: Stamp) -> Stamp:
        """``stamp``, or :class:`Unproven` when its signature is not this secret's."""
        if not self.proves(stamp):
            raise Unproven(
                f"{HEADER} {stamp.epoch}: its {PROOF_HEADER} does not check with this "
                "worker's leader secret; nothing was changed"
            )
        return stamp

    def _mac(self, born: int, series: str, epoch: int) -> str:
        message = b"\n".join((_CONTEXT, series.encode(), b"%d" % born, b"%d" % epoch))
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return urlsafe_b64encode(digest).decode().rstrip("=")
