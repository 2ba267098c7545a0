"""Chapter 14: who leads? The election's rule, written by the learner, read against
etcd's own keys while the leader dies.

``who_leads(candidates)`` is given the candidacies as etcd holds them (each a
:class:`~cube.lab.managers.Candidate`: the manager's name, the create revision of its
key, whether its lease is alive) and names the leader: the live candidate whose key
was created first, or None. The checker holds it to stories on paper (out of order, a
lease gone, a manager that came back, nobody left), then, given a cluster of several
managers on etcd, reads the real keys and compares the rule's answer with the manager
that leads, while the nemesis kills the leader and the killed one comes back. The
picture shows each manager's part over time, as its ``/health`` says, the kill marked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cube.cluster import LocalCluster
from cube.etcd import EtcdError
from cube.lab.checks.core import Check, quiet_logs, wait_until
from cube.lab.managers import Candidate, candidates, lease_ttl, looks
from cube.lab.nemesis import Nemesis
from cube.lab.verdict import Verdict
from cube.lab.watch import Observation, Watch

HINTS = (
    (
        "etcd gives each key a revision when it is created: who got in line first, and who "
        "can still lead?"
    ),
    (
        "keep the candidates whose lease is alive, then take the one whose key was created "
        "first; with nobody left, nobody leads"
    ),
    (
        "keep the candidates whose lease is alive, then take the one with the smallest "
        "revision (min(..., key=...)); with nobody left, return None"
    ),
)


def _c(name: str, revision: int, alive: bool = True) -> Candidate:
    return Candidate(name, revision, alive)


SETTLED = 1.0  # seconds one leader must hold before a disagreeing rule is judged wrong

# (story, candidates, the leader, the hint when the answer is wrong)
PAPER: list[tuple[str, list[Candidate], str | None, str]] = [
    ("one candidate", [_c("manager", 7)], "manager", HINTS[0]),
    (
        "three candidates, not listed in the order they joined",
        [_c("manager-3", 31), _c("manager", 12), _c("manager-2", 19)],
        "manager",
        "the first in line is the smallest revision, wherever it stands in the list",
    ),
    (
        "the first in line has lost its lease",
        [_c("manager", 12, alive=False), _c("manager-2", 19), _c("manager-3", 31)],
        "manager-2",
        "a candidate whose lease is gone is no candidate: etcd is about to delete its key",
    ),
    (
        "a manager that restarted joins at the back, whatever its name",
        [_c("manager", 58), _c("manager-2", 19), _c("manager-3", 31)],
        "manager-2",
        "compare revisions, not names: a new key always gets a larger revision",
    ),
    (
        "revisions of different lengths",
        [_c("manager-2", 100), _c("manager", 99)],
        "manager",
        "compare revisions as numbers: 99 comes before 100",
    ),
    (
        "every lease has run out",
        [_c("manager", 12, alive=False), _c("manager-2", 19, alive=False)],
        None,
        "with no live candidate, nobody leads: return None",
    ),
    ("no candidates at all", [], None, "with no candidate, nobody leads: return None"),
]


def check_who_leads(
    who_leads: Callable[[list[Candidate]], Any], cluster: LocalCluster | None = None
) -> Verdict:
    """Hold ``who_leads`` to the stories on paper, then (given a cluster of several
    managers on etcd) to the real election while its leader is killed."""
    check = Check("14 · who leads?", HINTS, "each manager's part, as its /health says")
    check.timeline.row_labels = False  # one row per manager: its name says it all
    several = cluster is not None and bool(cluster.etcd) and len(cluster.managers) > 1
    with check:
        for story, given, leader, hint in PAPER:
            answer = check.call(who_leads, "who_leads(...)", list(given))
            _judge(check, story, answer, leader, hint, given)
        if cluster is not None and several:
            check.ready(cluster)
            with quiet_logs():
                _live(check, who_leads, cluster)
        elif cluster is None:
            check.note(
                "no cluster of several managers (etcd is not installed here?): only the "
                "stories on paper were checked. With etcd (apt-get install etcd-server), "
                "run the cell that starts the cluster, then this check again"
            )
        else:
            check.note("this cluster has a single manager: only the stories on paper were checked")
    if several:
        return check.verdict("your rule names the leader etcd's election chose, before and after")
    return check.verdict("your rule names the leader in every story on paper")


def _judge(
    check: Check,
    story: str,
    answer: Any,
    leader: str | None,
    hint: str,
    given: list[Candidate],
) -> bool:
    if isinstance(answer, Candidate):
        check.fail(
            f"{story}: who_leads returned a whole Candidate; return its name",
            "return candidate.name (or None)",
        )
        return False
    if answer != leader:
        shown = ", ".join(f"{c.name} (rev {c.revision}, {_lease(c)})" for c in given)
        check.fail(f"{story}: your rule named {answer!r}, the leader is {leader!r} [{shown}]", hint)
        return False
    return True


def _lease(candidate: Candidate) -> str:
    return "lease alive" if candidate.alive else "lease gone"


# ---------------------------------------------------------------------- live


def _live(check: Check, who_leads: Callable[..., Any], cluster: LocalCluster) -> None:
    nemesis = Nemesis(cluster, check.timeline)
    takeover = 4 * lease_ttl(cluster) + 2  # seconds a new leader may take, on a busy machine
    with Watch(_roles(cluster), check.timeline, interval=0.1):
        check.say("reading etcd's keys while every manager runs")
        first = _agree(check, who_leads, cluster, "with every manager running", None)
        if first is None:
            first = cluster.leader()
        check.require(first is not None, "no manager led, so there was nothing to compare")
        if check.problems:
            return  # the rule already disagrees with a settled election: no need to wait more
        check.say(f"killing {first}, the leader, and waiting for the next one")
        with nemesis.killed(str(first)):
            now = _named(check, who_leads, cluster)
            check.note(_just_after(str(first), now))
            _agree(check, who_leads, cluster, f"after {first} was killed", first, takeover)
        check.say(f"{first} is back: waiting for its new key")
        # restarted: a new key, created last, so it waits at the back of the line
        wait_until(lambda: first in {c.name for c in _read(cluster)}, timeout=10)
        _agree(check, who_leads, cluster, f"once {first} came back", first)
        time.sleep(0.5)  # so that the picture shows it waiting in line


def _just_after(killed: str, named: Any) -> str:
    """What the rule named the moment the leader died, said for what it was."""
    if named == killed:
        return (
            f"just after {killed} was killed, your rule still named it: its key stays in "
            "etcd until its lease runs out, so a dead leader leads for up to a TTL"
        )
    return (
        f"just after {killed} was killed, your rule named {named!r}; {killed}'s key was "
        "still in etcd with its lease alive, so the election still counted it as leader"
    )


def _agree(
    check: Check,
    who_leads: Callable[..., Any],
    cluster: LocalCluster,
    when: str,
    not_this: str | None,
    timeout: float = 4.0,
) -> str | None:
    """Wait until some manager (not ``not_this``) leads and the rule names it. A rule
    that names another while the same leader has held for ``SETTLED`` seconds will not
    change its mind: that is the answer, and the wait ends there."""
    last: list[Any] = [None, None]
    since: list[Any] = [None, 0.0]  # the leader, and since when it has led

    def agree() -> str | bool | None:
        leader = cluster.leader()
        last[:] = [leader, _named(check, who_leads, cluster)]
        if leader is None or leader == not_this:
            return None
        if last[1] == leader:
            return leader
        if since[0] != leader:
            since[:] = [leader, time.monotonic()]
        return time.monotonic() - since[1] >= SETTLED  # True: settled, and it disagrees

    outcome = wait_until(agree, timeout=timeout, interval=0.1)
    found = outcome if isinstance(outcome, str) else None
    if found is None:
        leader, named = last
        check.fail(
            f"{when}: your rule named {named!r} from etcd's keys, but {leader or 'nobody'} leads"
        )
    else:
        check.note(f"{when}: your rule named {found}, the manager that leads")
    return found


def _named(check: Check, who_leads: Callable[..., Any], cluster: LocalCluster) -> Any:
    return check.call(who_leads, "who_leads(...)", _read(cluster))


def _read(cluster: LocalCluster) -> list[Candidate]:
    try:
        return candidates(cluster)
    except EtcdError:
        return []


def _roles(cluster: LocalCluster) -> Callable[[], list[Observation]]:
    """Each running manager's part, as its ``/health`` says: leading or waiting."""

    def sample() -> list[Observation]:
        return [
            (seen.name, "role", "leading" if seen.leading else "waiting")
            for seen in looks(cluster, timeout=0.3)
            if seen.leading is not None
        ]

    return sample
