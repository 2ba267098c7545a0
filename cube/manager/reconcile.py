"""Reconcile: what should happen next to one task. A pure function, no I/O.

Kubernetes controllers and Nomad's reconciler work this way, and so does Cube's
manager: compare what is *wanted* of a task (its ``desired`` state, and the order it is
at, its ``generation``) with what is *observed* (the copy each worker reports, a failed
health check) and answer with a :class:`Plan`: the task's record as it should now be
stored, the orders to send (:class:`Post` a task to a worker, :class:`Stop` a copy), and
when to look again if nothing happens first. The caller stores the record, then sends
the orders; every order is idempotent at the worker, so doing a plan twice is harmless,
and a manager killed between the two finds the same plan again on start.

Its inputs and its answer are plain data, as Nomad's reconciler's are: what is known of
the task's own worker (its state, and why it could not run the task, if it said so) is
part of :class:`Observed`. Placement comes after, as in Nomad: a plan that needs a worker
says so (:class:`Place`), the caller asks placement (feasibility, then the scheduler,
:mod:`cube.manager.nodes`), and :func:`placed` finishes the plan with its answer.

The rules, for a task wanted Running:

- placed nowhere yet: place it; no worker fits: wait for room, or fail at once when no
  worker could ever run it;
- its worker is down, or gone from the configuration: move it (a new order elsewhere);
- its worker lacks the order, or holds an older one: post it again;
- the worker reports it Running: copy what it says; a failed health check or a Failed
  copy is a *problem*: restart after an exponential backoff (the due time is stored in
  ``RestartAt``, so a restarted manager keeps it), up to the limit, then give up;
- copies anywhere else are strays: stop them, on any worker whose list is known.

Wanted Completed: stop every live copy; done once its worker confirms, or cannot (down).
Completed, or given up: stop any live copy, nothing else.

Every change of state goes through the one transition table (``check_transition``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cube.task import LIVE, RestartPolicy, State, Task, check_transition, clip_reason, new_attempt


@dataclass(frozen=True)
class Post:
    """Send ``task`` (an order at its generation) to ``worker``."""

    worker: str
    task: Task


@dataclass(frozen=True)
class Stop:
    """Ask ``worker`` to stop its copy of the task, at ``generation``."""

    worker: str
    task_id: str
    generation: int


Action = Post | Stop


@dataclass(frozen=True)
class Place:
    """The task needs a worker: placement is asked after reconcile, never ``avoid``."""

    avoid: str = ""


@dataclass(frozen=True)
class Plan:
    """The outcome of one pass: the record to store (the same object when nothing
    changed), the orders to send, and when to look again (None: when something changes).
    ``ordered`` is True when the record is a new order worth keeping in the history
    (a restart or a move). ``place``: the record needs a worker first (:func:`placed`
    finishes the plan with placement's answer)."""

    task: Task
    actions: tuple[Action, ...] = ()
    wake: datetime | None = None
    ordered: bool = False
    note: str = ""
    place: Place | None = None


@dataclass(frozen=True)
class Observed:
    """What is known of one task out there. ``copies`` has a key for every worker whose
    list of tasks is known (value None: it does not hold the task); ``problem`` is the
    latest failed health check of the running copy ("" when none). Of the task's own
    worker: its ``state`` ("up", "down", "unknown": not heard from yet, "gone": not
    configured) and, if it cannot run the task, why (``refusal``)."""

    copies: Mapping[str, Task | None] = field(default_factory=dict)
    problem: str = ""
    state: str = "unknown"
    refusal: str = ""


@dataclass(frozen=True)
class Spot:
    """A placement: the worker's name, or None with the reason; ``possible`` is False
    when no worker could ever run the task."""

    worker: str | None
    reason: str = ""
    possible: bool = True


@dataclass(frozen=True)
class Timing:
    """The restart policy, and how long to wait before asking again: after an order that
    no answer confirmed yet (``retry``), and for room to free up (``capacity``)."""

    restart: RestartPolicy = field(default_factory=RestartPolicy)
    retry: float = 1.0
    capacity: float = 5.0
    hopeless: float = 30.0  # a task no worker can run: look again now and then


def reconcile(task: Task, seen: Observed, now: datetime, timing: Timing) -> Plan:
    """The next step for ``task`` (see the module doc)."""
    if task.state is State.Completed or given_up(task, timing.restart):
        plan = Plan(task, _stops(task, seen, everywhere=True))
    elif task.desired is State.Completed:
        plan = _stop(task, seen, now, timing)
    else:
        plan = _run(task, seen, now, timing)
    return _confirm(plan, now, timing)


def placed(plan: Plan, spot: Spot, now: datetime, timing: Timing) -> Plan:
    """``plan`` finished with placement's answer to its :class:`Place`: the record on
    that worker, and the order sent there; or, with no worker, the record waiting for
    room (or Failed, when no worker could ever run it)."""
    task, strays = plan.task, plan.actions
    if spot.worker is not None:
        at = _to(task, State.Scheduled, worker=spot.worker, reason="")
        post = Post(spot.worker, order(at))
        done = Plan(at, (*strays, post), _later(now, timing.retry), plan.ordered, plan.note)
        return _confirm(done, now, timing)
    reason = clip_reason(spot.reason)
    if not spot.possible:
        failed = _to(task, State.Failed, reason=reason, finish_time=task.finish_time or now)
        wake = _later(now, timing.hopeless)
    else:
        failed = task if task.reason == reason else task.replace(reason=reason)
        wake = _later(now, timing.capacity)
    return _confirm(Plan(failed, strays, wake, plan.ordered, plan.note or reason), now, timing)


def _confirm(plan: Plan, now: datetime, timing: Timing) -> Plan:
    """An order is done only once a worker's list says so, and one can be lost on the
    way: a plan that sends any has a look again after ``retry`` at the latest."""
    if not plan.actions:
        return plan
    due = _later(now, timing.retry)
    if plan.wake is not None and plan.wake <= due:
        return plan
    return replace(plan, wake=due)


def given_up(task: Task, policy: RestartPolicy) -> bool:
    """Failed, with no restart left (and none due)."""
    return (
        task.state is State.Failed
        and task.restart_at is None
        and task.restart_count >= policy.limit
        and task.desired is State.Running
        and bool(task.worker)
    )


def order(task: Task) -> Task:
    """The task as sent to a worker: the order, without what only the manager knows."""
    return new_attempt(task)


# --------------------------------------------------------------------------- running


def _run(task: Task, seen: Observed, now: datetime, timing: Timing) -> Plan:
    strays = _stops(task, seen, everywhere=False)
    if task.restart_at is not None:
        if now < task.restart_at:
            return Plan(task, strays, wake=task.restart_at)
        return _renew(task, "", seen, now, timing, strays, restart=True)
    worker = task.worker
    if not worker:
        return Plan(task, strays, place=Place())
    if seen.state in ("down", "gone"):
        gone = "down" if seen.state == "down" else "no longer configured"
        return _renew(task, f"worker {worker} is {gone}", seen, now, timing, strays, restart=False)
    if worker not in seen.copies:
        return Plan(task, strays)  # its list is not known yet: wait for it
    copy = seen.copies[worker]
    if copy is None or _behind(copy, task):
        return _resend(task, copy, worker, seen, now, timing, strays)
    if copy.generation > task.generation:  # someone gave a newer order: overrule it
        ahead = task.replace(generation=copy.generation + 1)
        return Plan(ahead, (*strays, Post(worker, order(ahead))), wake=_later(now, timing.retry))
    return _follow(task, copy, seen, now, timing, strays)


def _resend(
    task: Task,
    copy: Task | None,
    worker: str,
    seen: Observed,
    now: datetime,
    timing: Timing,
    strays: tuple[Action, ...],
) -> Plan:
    """The worker lacks the order (or holds an older one)."""
    if copy is None and task.state is State.Running:
        return _problem(task, f"worker {worker} no longer has this task", seen, now, timing, strays)
    if seen.refusal:
        why = clip_reason(f"worker {worker}: {seen.refusal}")
        return Plan(task.replace(worker="", reason=why), strays, place=Place(avoid=worker))
    return Plan(task, (*strays, Post(worker, order(task))), wake=_later(now, timing.retry))


def _follow(
    task: Task,
    copy: Task,
    seen: Observed,
    now: datetime,
    timing: Timing,
    strays: tuple[Action, ...],
) -> Plan:
    """The worker holds the current order: take in what it reports."""
    if copy.state is State.Scheduled:
        return Plan(task, strays)  # starting
    if copy.state is State.Running:
        synced = _sync(task, copy)
        if seen.problem:
            why = f"health check failed: {seen.problem}"
            return _problem(synced, why, seen, now, timing, strays, still_running=True)
        return Plan(synced, strays)
    if copy.state is State.Failed:
        failed = _sync(task, copy)
        return _problem(failed, copy.reason or "it failed", seen, now, timing, strays)
    done = _sync(task, copy)  # Completed: stopped on its worker, outside Cube's orders
    return Plan(done, strays)


def _problem(
    task: Task,
    why: str,
    seen: Observed,
    now: datetime,
    timing: Timing,
    strays: tuple[Action, ...],
    *,
    still_running: bool = False,
) -> Plan:
    """Restart after the backoff, or give up at the limit. A copy that still runs (its
    health check fails) stays Running until the restart; anything else is Failed now."""
    count, policy = task.restart_count, timing.restart
    if count >= policy.limit:
        reason = clip_reason(f"gave up after {count} restarts; last problem: {why}")
        given = _to(task, State.Failed, reason=reason, finish_time=task.finish_time or now)
        copy = seen.copies.get(task.worker)
        stops = (Stop(task.worker, str(task.id), task.generation),) if _live(copy) else ()
        return Plan(given, (*strays, *stops), note=reason)
    delay = policy.backoff(count)
    due = _later(now, delay)
    reason = clip_reason(f"{why}; restart {count + 1} in {delay:g} s")
    if still_running:
        waiting = task.replace(restart_at=due, reason=reason)
    else:
        waiting = _to(task, State.Failed, restart_at=due, reason=reason, host_ports={})
        waiting = waiting.replace(finish_time=waiting.finish_time or now)
    return Plan(waiting, strays, wake=due, note=reason)


def _renew(
    task: Task,
    why: str,
    seen: Observed,
    now: datetime,
    timing: Timing,
    strays: tuple[Action, ...],
    *,
    restart: bool,
) -> Plan:
    """A new order for the task: a restart (on its worker while that is up and able) or
    a move (elsewhere, at once). Either counts as a restart."""
    count = task.restart_count + 1
    generation = max([task.generation, *(c.generation for c in seen.copies.values() if c)]) + 1
    worker = task.worker
    if not restart or seen.state != "up" or seen.refusal:
        worker = ""
    reason = f"restart {count} of {timing.restart.limit}" if restart else f"{why}; rescheduling"
    renewed = _to(
        task,
        State.Scheduled,
        restart_count=count,
        generation=generation,
        restart_at=None,
        worker=worker,
        container_id="",
        host_ports={},
        reason=clip_reason(reason),
    )
    if worker:
        post = Post(worker, order(renewed))
        return Plan(renewed, (*strays, post), _later(now, timing.retry), ordered=True, note=reason)
    avoid = task.worker if restart else ""
    return Plan(renewed, strays, ordered=True, note=reason, place=Place(avoid))


# -------------------------------------------------------------------------- stopping


def _stop(task: Task, seen: Observed, now: datetime, timing: Timing) -> Plan:
    stops = _stops(task, seen, everywhere=True)
    worker = task.worker
    if not worker:
        return Plan(_done(task, "cancelled before it was placed", now), stops)
    where = seen.state
    if where in ("down", "gone"):
        return Plan(_done(task, f"stopped on request (worker {worker} is {where})", now), stops)
    if worker not in seen.copies:
        return Plan(task, stops)  # wait to hear from it
    copy = seen.copies[worker]
    if copy is None or copy.state is State.Completed:
        reason = (copy.reason if copy else "") or "stopped on request"
        return Plan(_done(task, reason, now, copy.finish_time if copy else None), stops)
    if copy.state is State.Failed:  # nothing runs: done; the stop clears its remains
        clear = (Stop(worker, str(task.id), task.generation),)
        return Plan(_done(task, "stopped on request", now), (*stops, *clear))
    return Plan(task, stops, wake=_later(now, timing.retry))


def _done(task: Task, reason: str, now: datetime, finished: datetime | None = None) -> Task:
    if task.state is State.Pending or not task.worker:
        reason = "cancelled before it was placed"
    return _to(
        task,
        State.Completed,
        reason=clip_reason(reason),
        finish_time=finished or task.finish_time or now,
        host_ports={},
        restart_at=None,
    )


def _stops(task: Task, seen: Observed, *, everywhere: bool) -> tuple[Stop, ...]:
    """Stop orders for the live copies on workers that answer: everywhere, or all but
    the task's own worker. A copy already told to stop by this order is left to it.

    A worker answers when its list is known (``seen.copies`` holds only those), whatever
    its liveness says: a restarted worker's list can arrive before the probe that marks
    it up, and a worker dropped from the configuration is still listed while it holds
    copies. Either way its copies are stopped now; waiting for "up" lost them for good,
    since nothing changes on that worker afterwards to look at them again.

    A stray (a copy anywhere but the task's own worker) is stopped at its *own* order's
    generation, not the task's: a stop that arrives late, after that worker was given
    the task's newer order, is then older than what the worker follows, and refused,
    instead of stopping the copy that is wanted."""
    return tuple(
        Stop(worker, str(task.id), _stop_at(task, worker, copy))  # type: ignore[arg-type]
        for worker, copy in sorted(seen.copies.items())
        if _live(copy)
        and (everywhere or worker != task.worker)
        and not (
            copy.desired is State.Completed and copy.generation >= _stop_at(task, worker, copy)
        )  # type: ignore[union-attr]
    )


# --------------------------------------------------------------------------- helpers


def _stop_at(task: Task, worker: str, copy: Task) -> int:
    """The generation a stop of ``copy`` on ``worker`` carries (see :func:`_stops`)."""
    if worker == task.worker or copy.generation == 0:
        return task.generation
    return min(task.generation, copy.generation)


def _live(copy: Task | None) -> bool:
    return copy is not None and copy.state in LIVE


def _behind(copy: Task, task: Task) -> bool:
    """The copy is of an older order. A worker that keeps no generation (the Go Cube's)
    is judged by restart count alone."""
    if copy.generation == 0:
        return copy.restart_count < task.restart_count
    return (copy.generation, copy.restart_count) < (task.generation, task.restart_count)


def _sync(task: Task, copy: Task) -> Task:
    """The record with what its worker reports of the current order."""
    changes = {
        "container_id": copy.container_id,
        "host_ports": copy.host_ports,
        "start_time": copy.start_time,
        "finish_time": copy.finish_time,
    }
    if copy.state is not task.state:
        return _to(task, copy.state, reason=clip_reason(copy.reason), **changes)
    if all(getattr(task, k) == v for k, v in changes.items()):
        return task
    return task.replace(**changes)


def _to(task: Task, state: State, **changes: object) -> Task:
    """The task in ``state``, the move checked against the one transition table."""
    if state is not task.state:
        check_transition(task.state, state)
    return task.replace(state=state, **changes)


def _later(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
