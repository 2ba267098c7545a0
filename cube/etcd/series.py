"""The series of epochs one etcd gives: a random ID and a birth time, written once.

A leader's epoch is an etcd revision, and revisions count from 1 again in a new etcd
(one started afresh after a loss, say). So an epoch means something only within its
etcd: the first manager to lead there writes the **series** key, once (a transaction
that writes it only if absent), and every leader on that etcd signs its epochs with it
(:mod:`cube.proof`). A worker that followed an older etcd's epochs follows the new
series once a proven stamp of it comes, since its birth is later.

etcd's own cluster ID is not used: etcd derives it from its members' names and
addresses, so an etcd started again with the same flags and an empty data directory has
the very same ID, and would look like the old one.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from dataclasses import dataclass

from cube import clock
from cube.etcd.client import EtcdClient, b64
from cube.etcd.errors import EtcdError, OutcomeUnknown


@dataclass(frozen=True)
class Series:
    """One etcd's series: ``id`` (16 hex digits) and ``born`` (ms since 1970)."""

    id: str
    born: int


def series(client: EtcdClient, key: str) -> Series:
    """The series stored at ``key``, written now if there is none."""
    found = client.get(key)
    if found is None:
        new = json.dumps({"ID": secrets.token_hex(8), "Born": int(clock.now() * 1000)})
        compare = [{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}]
        with contextlib.suppress(OutcomeUnknown):  # read back below either way
            client.txn(compare, [{"request_put": {"key": b64(key), "value": b64(new)}}])
        found = client.get(key)  # ours, or the one another manager wrote first
        if found is None:
            raise EtcdError(f"the series key {key} vanished as it was written")
    try:
        data = json.loads(found.value)
        made = Series(str(data["ID"]), int(data["Born"]))
    except (ValueError, KeyError, TypeError):
        raise EtcdError(f"the series key {key} holds no series: {found.value[:80]!r}") from None
    if not re.fullmatch("[0-9a-f]{16}", made.id) or not 0 < made.born < 10**15:
        raise EtcdError(f"the series key {key} holds no series: {found.value[:80]!r}")
    return made
