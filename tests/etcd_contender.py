"""A candidate for leadership, as a process of its own (the election tests kill, pause
and resume it): ``etcd_contender.py ENDPOINTS PREFIX NAME TTL``.

It campaigns under ``PREFIX/leader`` and, while it leads, writes numbered entries
under ``PREFIX/log/NAME/``, each one fenced (written only while it still leads) and
holding the epoch it was written under: what a manager does with every decision. It
says what happens as JSON lines on stdout: elected, lost, wrote (with the revision),
refused (the fence held it back).
"""

from __future__ import annotations

import json
import sys
import threading
import time

from cube.etcd import Election, EtcdClient, EtcdError, NotLeader, Txn

_out = threading.Lock()


def say(event: str, **fields: object) -> None:
    with _out:
        print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def main(endpoints: str, prefix: str, name: str, ttl: str) -> None:
    client = EtcdClient(endpoints, timeout=2.0)
    election = Election(
        client,
        f"{prefix}/leader",
        name,
        int(ttl),
        on_elected=lambda epoch: say("elected", epoch=epoch),
        on_lost=lambda reason: say("lost", reason=reason),
    ).start()
    say("started")
    i = 0
    while True:
        if not election.is_leader:  # what every leader's action checks first
            election.wait_leading(0.5)
            continue
        epoch = election.epoch
        try:
            fence = election.fence()
            key = f"{prefix}/log/{name}/{i:06d}"
            value = json.dumps({"Name": name, "Epoch": epoch, "I": i})
            revision = Txn(client).require(*fence).put_raw(key, value).commit()
            say("wrote", i=i, epoch=epoch, revision=revision)
        except NotLeader as exc:
            say("refused", i=i, epoch=epoch, reason=str(exc))
        except EtcdError as exc:
            say("error", i=i, reason=str(exc))
        i += 1
        time.sleep(0.02)


if __name__ == "__main__":
    main(*sys.argv[1:5])
