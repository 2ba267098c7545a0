"""The simulated etcd (:mod:`cube.replay.etcd`): answer for answer the same as a real etcd
3.4, deterministic on a virtual clock, and good enough for the real client code.

1. The same calls sent to a real etcd and to :class:`SimEtcd` get the same answers, once
   what must differ is set aside (member IDs; revisions and lease IDs, mapped from the
   real etcd's to the simulation's as they are learned, so other writers of a shared
   etcd do not matter). Compaction is global, so that part runs on a member of its own.
2. Without etcd: leases run out by the virtual clock, history, compaction, fences.
3. The real :class:`~cube.etcd.EtcdClient`, :class:`~cube.etcd.EtcdStore` and
   :class:`~cube.etcd.Txn` over it, through its WSGI app, in this thread.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from cube.etcd import CasConflict, EtcdClient, EtcdStore, NotLeader, Txn, prefix_end
from cube.etcd import store as etcd_store
from cube.etcd.client import HEADERS
from cube.etcd.election import current_leader
from cube.etcd.txn import created_is, lease_is
from cube.replay.etcd import HistoryCompacted, SimEtcd, SimEtcdError
from cube.replay.wires import Request, call_wsgi
from cube.store import JsonCodec

SIM_URL = "http://simetcd:2379"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---------------------------------------------------------------------- the real etcd


@dataclass(frozen=True)
class Rev:
    """In a request: the revision the answer called ``name`` was at (plus ``plus``), on
    whichever etcd the request goes to."""

    name: str
    plus: int = 0


@dataclass(frozen=True)
class Lease:
    """In a request: the lease the answer called ``name`` granted."""

    name: str


@dataclass
class Side:
    """One etcd, real or simulated, and what its answers said so far."""

    post: Any  # (path, body) -> (HTTP status, JSON answer)
    revisions: dict[str, int] = field(default_factory=dict)
    leases: dict[str, int] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Rev):
            return str(self.revisions[value.name] + value.plus)
        if isinstance(value, Lease):
            return str(self.leases[value.name])
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def send(self, name: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        status, answer = self.post(path, self.resolve(body))
        if isinstance(answer, dict):
            header = answer.get("result", answer).get("header", {})
            if "revision" in header:
                self.revisions[name] = int(header["revision"])
            if path == "lease/grant" and "ID" in answer:
                self.leases[name] = int(answer["ID"])
        return status, answer


REVISION_FIELDS = {"revision", "create_revision", "mod_revision", "compact_revision"}
IDS = {"cluster_id", "member_id", "raft_term"}


class Differ:
    """Sends each call to both, and checks the answers match."""

    def __init__(self, url: str) -> None:
        self.time = 1000.0
        self.sim = SimEtcd(lambda: self.time)
        self.real = Side(lambda path, body: _post_real(url, path, body))
        self.simulated = Side(lambda path, body: _post_app(self.sim, path, body))
        self.pairs: list[tuple[int, int]] = []  # (real revision, simulated), as answered

    def check(self, name: str, path: str, body: dict[str, Any]) -> Any:
        self.time += 0.001  # a real etcd's clock moves too, between calls
        real = self.real.send(name, path, body)
        simulated = self.simulated.send(name, path, body)
        if name in self.real.revisions and name in self.simulated.revisions:
            self.pairs.append((self.real.revisions[name], self.simulated.revisions[name]))
        got, want = self.normal(simulated, sim=True), self.normal(real, sim=False)
        assert got == want, f"{name}: {path} {json.dumps(body, default=str)}"
        return simulated[1]

    def real_to_sim(self, revision: int) -> int:
        """The simulation's revision for a real one: the pair answered with the highest
        real revision up to it (others' writes to a shared etcd fall in between)."""
        below = [pair for pair in self.pairs if pair[0] <= revision]
        assert below, f"revision {revision} is older than the sequence"
        return max(below)[1]

    def normal(self, answer: tuple[int, Any], sim: bool) -> tuple[int, Any]:
        lease_ids = {self.real.leases[n]: self.simulated.leases[n] for n in self.real.leases}

        def walk(value: Any) -> Any:
            if isinstance(value, dict):
                out = {}
                for k, v in value.items():
                    if k in IDS:
                        continue
                    if k in REVISION_FIELDS and not sim:
                        v = str(self.real_to_sim(int(v)))
                    elif k in ("ID", "lease") and not sim:
                        v = str(lease_ids.get(int(v), int(v)))
                    out[k] = walk(v)
                return out
            if isinstance(value, list):
                return [walk(v) for v in value]
            return value

        status, body = answer
        body = walk(body)
        if isinstance(body, dict) and "grantedTTL" in body:
            # whole seconds left, truncated, by a clock that moved a little since the grant
            assert int(body["TTL"]) in range(int(body["grantedTTL"]) - 2, int(body["grantedTTL"]))
            body["TTL"] = "left"
            if "keys" in body:  # etcd keeps a lease's keys in a Go map: no order to them
                body["keys"] = sorted(body["keys"])
        return status, body


def _post_real(url: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    answer = requests.post(f"{url}/v3/{path}", data=json.dumps(body), timeout=10)
    return answer.status_code, answer.json()


def _post_app(sim: SimEtcd, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    answer = call_wsgi(sim.app, Request("POST", f"{SIM_URL}/v3/{path}", dict(HEADERS), data))
    return answer.status_code, answer.json()


def txn(
    compare: list[dict[str, Any]], success: list[dict[str, Any]], failure: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"compare": compare, "success": success, "failure": failure}


def calls(prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every kind of call Cube makes, with the options it uses, and the errors."""

    def k(name: str) -> str:
        return b64(prefix + name)

    def cmp(key: str, target: str, value: Any, result: str = "EQUAL") -> dict[str, Any]:
        wire = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision"}
        wire |= {"VALUE": "value", "LEASE": "lease"}
        return {"key": k(key), "target": target, "result": result, wire[target]: value}

    def put(key: str, value: str = "", **more: Any) -> dict[str, Any]:
        return {"request_put": {"key": k(key), "value": b64(value), **more}}

    def get(key: str) -> dict[str, Any]:
        return {"request_range": {"key": k(key)}}

    def delete(key: str, **more: Any) -> dict[str, Any]:
        return {"request_delete_range": {"key": k(key), **more}}

    whole = {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
    lease, short = Lease("lease"), Lease("short")
    return [
        ("start", "kv/range", {"key": k("a")}),
        ("put-a", "kv/put", {"key": k("a"), "value": b64("1")}),
        ("put-b", "kv/put", {"key": k("b"), "value": b64("2")}),
        ("put-a2", "kv/put", {"key": k("a"), "value": b64("3"), "prev_kv": True}),
        ("lease", "lease/grant", {"TTL": "60"}),
        ("short", "lease/grant", {"TTL": "1"}),
        ("put-c", "kv/put", {"key": k("c"), "value": b64("4"), "lease": lease}),
        ("put-d", "kv/put", {"key": k("d"), "lease": lease}),
        ("no-such-lease", "kv/put", {"key": k("e"), "value": b64("5"), "lease": "123456789"}),
        ("get-a", "kv/range", {"key": k("a")}),
        ("all", "kv/range", whole),
        ("page", "kv/range", {**whole, "limit": "2"}),
        ("count", "kv/range", {**whole, "count_only": True}),
        ("count-one", "kv/range", {"key": k("a"), "count_only": True}),
        ("keys", "kv/range", {**whole, "keys_only": True}),
        (
            "newest-keys",
            "kv/range",
            {
                **whole,
                "limit": "2",
                "keys_only": True,
                "sort_order": "DESCEND",
                "sort_target": "KEY",
            },
        ),
        (
            "leader",
            "kv/range",
            {**whole, "limit": "1", "sort_order": "ASCEND", "sort_target": "CREATE"},
        ),
        (
            "before-c",
            "kv/range",
            {
                **whole,
                "limit": "1",
                "sort_order": "DESCEND",
                "sort_target": "CREATE",
                "max_create_revision": Rev("put-c", -1),
            },
        ),
        ("by-version", "kv/range", {**whole, "sort_order": "DESCEND", "sort_target": "VERSION"}),
        ("by-mod", "kv/range", {**whole, "sort_target": "MOD"}),
        ("by-value", "kv/range", {**whole, "sort_order": "DESCEND", "sort_target": "VALUE"}),
        (
            "mod-window",
            "kv/range",
            {
                **whole,
                "min_mod_revision": Rev("put-b"),
                "max_mod_revision": Rev("put-c"),
                "limit": "1",
            },
        ),
        ("created-since", "kv/range", {**whole, "min_create_revision": Rev("put-b")}),
        ("then", "kv/range", {**whole, "revision": Rev("put-b")}),
        ("then-page", "kv/range", {**whole, "revision": Rev("put-a2"), "limit": "1"}),
        ("future", "kv/range", {**whole, "revision": str(10**15)}),
        ("no-key", "kv/range", {}),
        # transactions: put_if, delete_if, fences, and etcd's refusals
        ("create-f", "kv/txn", txn([cmp("f", "CREATE", "0")], [put("f", "6")], [get("f")])),
        ("create-f-again", "kv/txn", txn([cmp("f", "CREATE", "0")], [put("f", "6")], [get("f")])),
        ("cas-a", "kv/txn", txn([cmp("a", "MOD", Rev("put-a2"))], [put("a", "7")], [get("a")])),
        (
            "cas-a-stale",
            "kv/txn",
            txn([cmp("a", "MOD", Rev("put-a2"))], [put("a", "8")], [get("a")]),
        ),
        (
            "versions",
            "kv/txn",
            txn([cmp("a", "VERSION", "3"), cmp("b", "VERSION", "2", "LESS")], [get("b")], []),
        ),
        (
            "fence",
            "kv/txn",
            txn(
                [cmp("c", "CREATE", Rev("put-c")), cmp("c", "LEASE", lease)],
                [put("g", "8", prev_kv=True), get("g"), delete("f", prev_kv=True), get("f")],
                [get("c")],
            ),
        ),
        ("fence-lost", "kv/txn", txn([cmp("a", "LEASE", lease)], [put("a", "9")], [get("a")])),
        (
            "values",
            "kv/txn",
            txn([cmp("b", "VALUE", b64("2")), cmp("b", "VALUE", b64("1"), "GREATER")], [], []),
        ),
        (
            "value-of-nothing",
            "kv/txn",
            txn([cmp("zz", "VALUE", b64("2"), "NOT_EQUAL")], [], [get("zz"), delete("zz")]),
        ),
        (
            "absent-is-zero",
            "kv/txn",
            txn(
                [
                    cmp("b", "MOD", Rev("put-c"), "LESS"),
                    cmp("zz", "MOD", "0"),
                    cmp("zz", "LEASE", "0"),
                ],
                [put("h", "10")],
                [],
            ),
        ),
        (
            "not-equal",
            "kv/txn",
            txn([cmp("h", "VERSION", "1", "NOT_EQUAL")], [], [delete("h"), get("h")]),
        ),
        (
            "ranged-compare",
            "kv/txn",
            txn([{**whole, "target": "VERSION", "result": "GREATER", "version": "0"}], [], []),
        ),
        ("defaults", "kv/txn", txn([{"key": k("b"), "version": "1"}], [get("b")], [])),
        ("twice", "kv/txn", txn([], [put("h", "1"), put("h", "2")], [])),
        ("put-in-delete", "kv/txn", txn([], [{"request_delete_range": whole}, put("b")], [])),
        ("deletes-overlap", "kv/txn", txn([], [delete("zz"), delete("zz")], [])),
        ("txn-no-lease", "kv/txn", txn([], [put("h", "1", lease="123456789")], [])),
        ("empty-txn", "kv/txn", {}),
        # deletes
        ("delete-g", "kv/deleterange", {"key": k("g")}),
        ("delete-nothing", "kv/deleterange", {"key": k("g")}),
        ("delete-some", "kv/deleterange", {"key": k("a"), "range_end": k("c"), "prev_kv": True}),
        # leases
        ("ttl", "lease/timetolive", {"ID": lease, "keys": True}),
        ("renew", "lease/keepalive", {"ID": lease}),
        ("revoke", "lease/revoke", {"ID": lease}),
        ("after-revoke", "kv/range", whole),
        ("ttl-gone", "lease/timetolive", {"ID": lease}),
        ("renew-gone", "lease/keepalive", {"ID": lease}),
        ("revoke-gone", "lease/revoke", {"ID": lease}),
        ("revoke-short", "lease/revoke", {"ID": short}),
        ("regrant", "lease/grant", {"TTL": "5", "ID": short}),
        ("regrant-again", "lease/grant", {"TTL": "5", "ID": short}),
        ("revoke-regrant", "lease/revoke", {"ID": short}),
        ("too-long", "lease/grant", {"TTL": "9000000001"}),
        ("last", "kv/put", {"key": k("z"), "value": b64("the end")}),
    ]


@pytest.mark.etcd
def test_the_simulation_answers_as_a_real_etcd(etcd_ok: list[str]) -> None:
    """On the tests' shared etcd (CUBE_ETCD, in CI the one on 127.0.0.1:2379)."""
    real_etcd = etcd_ok[0]
    prefix = f"/simetcd-test-{uuid.uuid4().hex[:12]}/"
    differ = Differ(real_etcd)
    try:
        for name, path, body in calls(prefix):
            differ.check(name, path, body)
        # and a watch from the start sees what events() gives, in the same form
        start = differ.real.revisions["start"] + 1
        events = differ.sim.events(
            prefix, prefix_end(prefix), differ.simulated.revisions["start"] + 1
        )
        real = _watch(real_etcd, prefix, start, len(events))
        assert differ.normal((200, real), sim=False) == (200, {"events": events})
        assert [e.get("type", "PUT") for e in events].count("DELETE") == 7
    finally:
        requests.post(
            f"{real_etcd}/v3/kv/deleterange",
            json={"key": b64(prefix), "range_end": b64(prefix_end(prefix))},
            timeout=10,
        )
        for lease in differ.real.leases.values():
            requests.post(f"{real_etcd}/v3/lease/revoke", json={"ID": str(lease)}, timeout=10)


@pytest.mark.etcd
def test_compaction_answers_as_a_real_etcd(local_etcd: Any) -> None:
    """On a member of its own: compaction is global, and would pull history from under
    other tests."""
    url = local_etcd().endpoints[0]
    prefix = f"/simetcd-test-{uuid.uuid4().hex[:12]}/"
    differ = Differ(url)
    key = b64(prefix + "a")
    for name, path, body in [
        ("start", "kv/range", {"key": key}),
        ("put-a", "kv/put", {"key": key, "value": b64("1")}),
        ("put-b", "kv/put", {"key": b64(prefix + "b"), "value": b64("2")}),
        ("put-a2", "kv/put", {"key": key, "value": b64("3")}),
        ("compact", "kv/compaction", {"revision": Rev("put-b"), "physical": True}),
        ("read-compacted", "kv/range", {"key": key, "revision": Rev("put-a")}),
        ("read-at-compaction", "kv/range", {"key": key, "revision": Rev("put-b")}),
        ("read-after", "kv/range", {"key": key, "revision": Rev("put-a2")}),
        ("compact-again", "kv/compaction", {"revision": Rev("put-b")}),
        ("compact-older", "kv/compaction", {"revision": Rev("put-a")}),
        ("compact-future", "kv/compaction", {"revision": str(10**15)}),
        (
            "txn-read-compacted",
            "kv/txn",
            txn([], [{"request_range": {"key": key, "revision": "1"}}], []),
        ),
    ]:
        differ.check(name, path, body)
    # a watch from before the compaction is cancelled with where history now starts
    real = _watch(url, prefix, differ.real.revisions["put-a"], 0)
    with pytest.raises(HistoryCompacted) as compacted:
        differ.sim.events(prefix, prefix_end(prefix), differ.simulated.revisions["put-a"])
    assert differ.real_to_sim(int(real["compact_revision"])) == compacted.value.oldest
    assert compacted.value.oldest == differ.sim.compacted == differ.simulated.revisions["put-b"]
    # from the compacted revision itself, history is there
    events = differ.sim.events(prefix, prefix_end(prefix), differ.sim.compacted)
    assert [e["kv"]["value"] for e in events] == [b64("2"), b64("3")]


def _watch(url: str, prefix: str, start: int, count: int) -> dict[str, Any]:
    """A real watch from ``start``: its first ``count`` events (the cancel when it was
    cancelled), in one "result" (as etcd may split them across several)."""
    create = {
        "key": b64(prefix),
        "range_end": b64(prefix_end(prefix)),
        "start_revision": str(start),
    }
    events: list[dict[str, Any]] = []
    with requests.post(
        f"{url}/v3/watch", json={"create_request": create}, stream=True, timeout=10
    ) as answer:
        for line in answer.iter_lines():
            result = json.loads(line)["result"]
            if result.get("canceled"):
                return result
            events += result.get("events", [])
            if len(events) >= count and not result.get("created"):
                return {"events": events}
    raise AssertionError("the watch ended")


# ---------------------------------------------------------------------- no etcd needed


class Clock:
    def __init__(self) -> None:
        self.time = 100.0

    def now(self) -> float:
        return self.time


def _put(sim: SimEtcd, key: str, value: str = "v", lease: int = 0) -> int:
    body = {"key": b64(key), "value": b64(value)} | ({"lease": str(lease)} if lease else {})
    return int(sim.call("kv/put", body)["header"]["revision"])


def _keys(sim: SimEtcd, prefix: str = "/") -> list[str]:
    found = sim.call("kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
    return [base64.b64decode(kv["key"]).decode() for kv in found.get("kvs", [])]


def test_a_lease_runs_out_by_the_virtual_clock_and_its_keys_go_at_one_revision() -> None:
    clock, changes = Clock(), []
    sim = SimEtcd(clock.now, on_change=lambda: changes.append(sim.revision))
    assert sim.revision == 1 and sim.next_expiry() is None
    short = int(sim.call("lease/grant", {"TTL": "1"})["ID"])  # etcd's minimum: 2 s
    lease = int(sim.call("lease/grant", {"TTL": "5"})["ID"])
    assert lease == short + 1 and sim.next_expiry() == 102.0
    _put(sim, "/x/b", lease=lease)
    _put(sim, "/x/a", lease=lease)
    _put(sim, "/x/c")
    assert changes == [2, 3, 4]
    clock.time = 102.0
    sim.expire()  # the short lease had no keys: no revision
    assert sim.revision == 4 and changes == [2, 3, 4] and not sim.lease_alive(short)
    clock.time = 104.0
    assert sim.call("lease/keepalive", {"ID": str(lease)})["result"]["TTL"] == "5"
    assert sim.next_expiry() == 109.0
    clock.time = 108.999
    sim.expire()
    assert sim.lease_alive(lease) and sim.revision == 4
    left = sim.call("lease/timetolive", {"ID": str(lease)})
    assert "TTL" not in left and left["grantedTTL"] == "5"  # 1 ms left: 0 s, so left out
    clock.time = 109.0  # exactly the TTL after the renewal
    assert not sim.lease_alive(lease)
    sim.expire()
    assert sim.revision == 5 and changes == [2, 3, 4, 5] and _keys(sim) == ["/x/c"]
    assert sim.events("/x/", prefix_end("/x/"), 5) == [
        {"type": "DELETE", "kv": {"key": b64("/x/a"), "mod_revision": "5"}},
        {"type": "DELETE", "kv": {"key": b64("/x/b"), "mod_revision": "5"}},
    ]
    assert sim.next_expiry() is None
    gone = sim.call("lease/keepalive", {"ID": str(lease)})
    assert "TTL" not in gone["result"] and gone["result"]["ID"] == str(lease)
    assert sim.call("lease/timetolive", {"ID": str(lease)})["TTL"] == "-1"
    with pytest.raises(SimEtcdError) as error:
        sim.call("lease/revoke", {"ID": str(lease)})
    assert (error.value.http_status, error.value.grpc_code) == (404, 5)
    assert error.value.message == "etcdserver: requested lease not found"


def test_a_call_expires_what_is_due_first() -> None:
    clock = Clock()
    sim = SimEtcd(clock.now)
    lease = int(sim.call("lease/grant", {"TTL": "3"})["ID"])
    _put(sim, "/k", lease=lease)
    clock.time += 3
    assert "kvs" not in sim.call("kv/range", {"key": b64("/k")})  # no expire() called
    with pytest.raises(SimEtcdError, match="requested lease not found"):
        _put(sim, "/k", lease=lease)


def test_events_are_every_put_and_delete_in_order_for_a_key_or_a_range() -> None:
    sim = SimEtcd(Clock().now)
    _put(sim, "/a/1", "one")  # 2
    _put(sim, "/b", "b")  # 3
    _put(sim, "/a/2", "two")  # 4
    sim.call("kv/deleterange", {"key": b64("/a/1")})  # 5
    _put(sim, "/a/1", "again")  # 6: created anew

    def seen(key: str, end: str | None, start: int) -> list[tuple[str, str, str]]:
        out = []
        for event in sim.events(key, end, start):
            kv = event["kv"]
            out.append(
                (event.get("type", "PUT"), base64.b64decode(kv["key"]).decode(), kv["mod_revision"])
            )
        return out

    assert seen("/a/", prefix_end("/a/"), 0) == [
        ("PUT", "/a/1", "2"),
        ("PUT", "/a/2", "4"),
        ("DELETE", "/a/1", "5"),
        ("PUT", "/a/1", "6"),
    ]
    assert seen("/a/1", None, 5) == [("DELETE", "/a/1", "5"), ("PUT", "/a/1", "6")]
    assert seen("/a/2", "\0", 4) == [("PUT", "/a/2", "4")]  # "\0": every key from /a/2
    assert seen("/a/2", "\0", 0) == [("PUT", "/b", "3"), ("PUT", "/a/2", "4")]
    assert seen("/", prefix_end("/"), 7) == []
    last = sim.events("/a/1", None, 6)[0]["kv"]
    assert last == {
        "key": b64("/a/1"),
        "create_revision": "6",
        "mod_revision": "6",
        "version": "1",
        "value": b64("again"),
    }


def test_history_is_compacted_on_request_and_past_its_length() -> None:
    sim = SimEtcd(Clock().now, history=4)
    for n in range(3):
        _put(sim, "/k", str(n))  # revisions 2, 3, 4
    sim.call("kv/compaction", {"revision": "3"})
    assert sim.compacted == 3
    with pytest.raises(HistoryCompacted) as error:
        sim.events("/k", None, 2)
    assert error.value.oldest == 3 and error.value.http_status == 400
    assert len(sim.events("/k", None, 3)) == 2
    with pytest.raises(SimEtcdError, match="has been compacted"):
        sim.call("kv/range", {"key": b64("/k"), "revision": "2"})
    old = sim.call("kv/range", {"key": b64("/k"), "revision": "3"})["kvs"][0]
    assert base64.b64decode(old["value"]) == b"1" and old["version"] == "2"
    # a transaction writing two keys is one revision, kept or compacted whole
    two = [{"request_put": {"key": b64(key), "value": b64("t")}} for key in ("/t1", "/t2")]
    sim.call("kv/txn", {"success": two})  # revision 5: 4 events kept, 3 to 5
    _put(sim, "/k", "x")  # 6: 5 events, revision 3 goes
    assert sim.compacted == 4
    with pytest.raises(HistoryCompacted):
        sim.events("/", "\0", 3)
    _put(sim, "/k", "y")  # 7: revision 4 goes, 5 stays whole though one too many
    assert sim.compacted == 5
    assert [e["kv"]["mod_revision"] for e in sim.events("/", "\0", 5)] == ["5", "5", "6", "7"]
    assert sim.events("/", "\0", 0) == sim.events("/", "\0", 5)


def test_a_fenced_transaction_fails_once_the_leaders_lease_ran_out() -> None:
    clock = Clock()
    sim = SimEtcd(clock.now)
    lease = int(sim.call("lease/grant", {"TTL": "5"})["ID"])
    epoch = _put(sim, "/leader/me", "me", lease=lease)
    fence = [
        {
            "key": b64("/leader/me"),
            "target": "CREATE",
            "result": "EQUAL",
            "create_revision": str(epoch),
        },
        {"key": b64("/leader/me"), "target": "LEASE", "result": "EQUAL", "lease": str(lease)},
    ]
    write = {
        "compare": fence,
        "success": [{"request_put": {"key": b64("/data"), "value": b64("1")}}],
    }
    assert sim.call("kv/txn", write)["succeeded"] is True
    clock.time += 5
    failed = sim.call(
        "kv/txn", write | {"failure": [{"request_range": {"key": b64("/leader/me")}}]}
    )
    assert "succeeded" not in failed and "kvs" not in failed["responses"][0]["response_range"]
    # a new leader on a new lease at a later epoch does not revive the old fence
    again = int(sim.call("lease/grant", {"TTL": "5"})["ID"])
    assert _put(sim, "/leader/me", "me", lease=again) > epoch
    assert "succeeded" not in sim.call("kv/txn", write)


def test_the_gateway_as_a_wsgi_app() -> None:
    sim = SimEtcd(Clock().now)

    def send(method: str, path: str, body: bytes = b"") -> requests.Response:
        return call_wsgi(sim.app, Request(method, f"{SIM_URL}{path}", dict(HEADERS), body))

    assert send("GET", "/health").json() == {"health": "true"}
    missing = send("POST", "/v3/kv/nothing", b"{}")
    assert (missing.status_code, missing.text) == (404, "Not Found\n")
    bad = send("POST", "/v3/kv/range", b"notjson")
    assert bad.status_code == 400 and bad.json()["code"] == 3
    no_key = send("POST", "/v3/kv/range", b"{}")
    message = "etcdserver: key is not provided"
    assert (no_key.status_code, no_key.json()) == (
        400,
        {"error": message, "message": message, "code": 3},
    )
    lease = send("POST", "/v3/lease/grant", b'{"TTL":"9000000000"}').json()["ID"]
    renewed = send("POST", "/v3/lease/keepalive", json.dumps({"ID": lease}).encode())
    assert renewed.text.endswith("}\n") and renewed.json()["result"]["TTL"] == "9000000000"
    taken = send("POST", "/v3/lease/grant", json.dumps({"ID": lease, "TTL": "5"}).encode())
    assert (taken.status_code, taken.json()["code"]) == (412, 9)


def test_same_calls_same_answers_and_keys_in_byte_order() -> None:
    """Keys are bytes to etcd: "/\\xff" (not UTF-8) sorts after "/\\uffff" (bytes ef bf bf),
    though not as the strings the client makes of them."""
    raw = [b"/\xff", "/\uffff".encode(), b"/b", b"/a"]

    def run() -> list[Any]:
        sim = SimEtcd(Clock().now)
        out: list[Any] = [sim.call("lease/grant", {"TTL": "10"})]
        for key in raw:
            body = {"key": base64.b64encode(key).decode(), "lease": out[0]["ID"]}
            out.append(sim.call("kv/put", body))
        out.append(sim.call("kv/range", {"key": b64("/"), "range_end": b64("0")}))
        out.append(sim.events("/\udcff", None, 0))  # the client's str for b"/\xff"
        out.append(sim.call("lease/revoke", {"ID": out[0]["ID"]}))
        out.append(sim.events("/", "\0", 0))
        return out

    first, second = run(), run()
    assert first == second
    keys = [base64.b64decode(kv["key"]) for kv in first[5]["kvs"]]
    assert keys == sorted(raw) == [b"/a", b"/b", "/\uffff".encode(), b"/\xff"]
    assert len(first[6]) == 1
    deleted = [base64.b64decode(e["kv"]["key"]) for e in first[-1] if e.get("type") == "DELETE"]
    assert deleted == keys  # a lease's keys go in key order


# ---------------------------------------------------------------------- the real client


class InProcess:
    """What :class:`EtcdClient` asks of its ``requests`` session, carried to a WSGI app
    in this thread."""

    def __init__(self, sim: SimEtcd) -> None:
        self.sim = sim

    def post(self, url: str, data: str = "", timeout: Any = None) -> requests.Response:
        return call_wsgi(self.sim.app, Request("POST", url, dict(HEADERS), data.encode()))

    def get(self, url: str, timeout: Any = None) -> requests.Response:
        return call_wsgi(self.sim.app, Request("GET", url, dict(HEADERS)))

    def close(self) -> None:
        pass


class SimClient(EtcdClient):
    def __init__(self, sim: SimEtcd) -> None:
        super().__init__(SIM_URL)
        self.in_process = InProcess(sim)

    def _session(self) -> Any:
        return self.in_process


@pytest.fixture
def sim_client() -> Iterator[tuple[Clock, SimEtcd, EtcdClient]]:
    clock = Clock()
    sim = SimEtcd(clock.now)
    with SimClient(sim) as client:
        yield clock, sim, client


def test_the_real_store_over_the_simulation(
    sim_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, sim, client = sim_client
    monkeypatch.setattr(etcd_store, "PAGE", 2)  # listings read several pages, at one revision
    assert client.healthy()
    store: EtcdStore[Any] = EtcdStore(client, "/cube/tasks", JsonCodec())
    for n, key in enumerate(["c", "a", "e", "b", "d"]):
        store.put(key, {"n": n})
    assert store.get("a") == {"n": 1} and store.count() == 5 and "e" in store
    with pytest.raises(KeyError):
        store.get("zz")
    read = store.get_versioned("a")
    written = store.put_if("a", {"n": 10}, read.mod_revision)
    assert written == sim.revision
    with pytest.raises(CasConflict):
        store.put_if("a", {"n": 11}, read.mod_revision)
    with pytest.raises(CasConflict):
        store.put_if("b", {"n": 12}, 0)  # only if absent
    store.put_if("f", {"n": 5}, 0)
    with pytest.raises(CasConflict):
        store.delete_if("c", read.mod_revision)
    store.delete_if("c", store.get_versioned("c").mod_revision)
    store.delete("e")
    with pytest.raises(KeyError):
        store.delete("e")
    snapshot = store.snapshot()
    assert snapshot.revision == sim.revision
    assert sorted(snapshot.entries) == ["a", "b", "d", "f"]
    assert snapshot.entries["a"].value == {"n": 10}
    assert store.items() == [("a", {"n": 10}), ("b", {"n": 3}), ("d", {"n": 4}), ("f", {"n": 5})]
    assert store.keys() == ["a", "b", "d", "f"]
    assert store.first_keys(2) == ["a", "b"] and store.first_keys(3, newest=True) == ["f", "d", "b"]
    client.put(store.path("bad"), "not json")  # set aside, in one transaction
    assert [key for key, _ in store.items()] == ["a", "b", "d", "f"]
    assert list(store.unreadable()) == ["bad"] and store.count() == 4


def test_a_fenced_write_is_refused_as_not_leader_and_a_stale_one_as_a_conflict(
    sim_client: Any,
) -> None:
    clock, _, client = sim_client
    lease, ttl = client.grant(1)
    assert ttl == 2  # etcd's minimum
    lease, ttl = client.grant(5)
    key = f"/cube/leader/{lease:x}"
    client.put(key, json.dumps({"Name": "m1"}), lease=lease)
    epoch = client.get(key).create_revision
    leader = current_leader(client, "/cube/leader")
    assert leader is not None and (leader.name, leader.epoch) == ("m1", epoch)
    fence = [
        created_is(key, epoch, "m1 lost", fence=True),
        lease_is(key, lease, "m1 lost", fence=True),
    ]
    store: EtcdStore[Any] = EtcdStore(client, "/cube/tasks", JsonCodec()).with_guard(lambda: fence)
    store.put("t1", {"n": 1})
    mod = store.get_versioned("t1").mod_revision
    store.put("t1", {"n": 2})
    with pytest.raises(CasConflict):
        Txn(client).require(*fence, store.unchanged("t1", mod)).put(store, "t1", {"n": 3}).commit()
    assert client.time_to_live(lease) == 5 and client.keepalive(lease) == 5
    clock.time += 3.5
    assert client.time_to_live(lease) == 1  # one and a half seconds left: one whole
    clock.time += 1.5
    with pytest.raises(NotLeader, match="m1 lost"):
        store.put("t1", {"n": 4})
    with pytest.raises(NotLeader):
        Txn(client).require(*fence, store.unchanged("t1", mod)).put(store, "t1", {"n": 3}).commit()
    with pytest.raises(NotLeader):
        store.delete("nothing")  # the fence failed too: not leading is what counts
    assert client.get(key) is None and current_leader(client, "/cube/leader") is None
    assert client.time_to_live(lease) == -1 and client.keepalive(lease) == 0
    assert client.revoke(lease) is False
    assert EtcdStore(client, "/cube/tasks", JsonCodec()).get("t1") == {"n": 2}
