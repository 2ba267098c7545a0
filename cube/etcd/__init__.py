"""Cube on etcd: the manager's stores, leader election and fencing, for several managers.

Cube's embedded store (:mod:`cube.store`) stays the default; nothing here is imported
unless a manager is started with ``--store etcd://host:port[,host:port...]``. Each
module does one job:

- :mod:`~cube.etcd.client`: etcd's v3 API over its JSON gateway, several endpoints
  (and why not a client library);
- :mod:`~cube.etcd.store`: :class:`EtcdStore`, a :class:`cube.store.Store` on etcd,
  with revisions for compare-and-swap;
- :mod:`~cube.etcd.txn`: compares and transactions across stores, all or nothing;
- :mod:`~cube.etcd.lease`: a lease kept alive, that knows when it may be gone;
- :mod:`~cube.etcd.election`: one leader among several managers, its epoch, fencing;
- :mod:`~cube.etcd.series`: the series of epochs one etcd gives (a new etcd, a new one);
- :mod:`~cube.etcd.watch`: every change under a prefix, in order, across failures;
- :mod:`~cube.etcd.local`: a local etcd (one member or three) as real processes.
"""

from cube.etcd.client import EtcdClient, KeyValue, parse_endpoints, prefix_end
from cube.etcd.election import Election, Leader, current_leader
from cube.etcd.errors import (
    CasConflict,
    Compacted,
    EtcdError,
    EtcdUnavailable,
    NotLeader,
    OutcomeUnknown,
)
from cube.etcd.lease import Lease
from cube.etcd.local import LocalEtcd, etcd_binary
from cube.etcd.store import EtcdStore, Snapshot, StoreEvent, Versioned
from cube.etcd.txn import Compare, Txn, absent, created_is, lease_is, mod_is
from cube.etcd.watch import Event, Watch, watch

__all__ = [
    "CasConflict",
    "Compacted",
    "Compare",
    "Election",
    "EtcdClient",
    "EtcdError",
    "EtcdStore",
    "EtcdUnavailable",
    "Event",
    "KeyValue",
    "Leader",
    "Lease",
    "LocalEtcd",
    "NotLeader",
    "OutcomeUnknown",
    "Snapshot",
    "StoreEvent",
    "Txn",
    "Versioned",
    "Watch",
    "absent",
    "created_is",
    "current_leader",
    "etcd_binary",
    "lease_is",
    "mod_is",
    "parse_endpoints",
    "prefix_end",
    "watch",
]
