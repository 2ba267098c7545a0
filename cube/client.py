"""Python clients for the worker and manager APIs.

Every call has a timeout (the book's HTTP calls had none, so one hung worker froze the
manager), and every failure is a typed exception carrying the server's message::

    >>> manager = ManagerClient("http://127.0.0.1:5555")
    >>> task = manager.submit({"Name": "web", "Image": "cube/echo"})
    >>> manager.task(task.id).state
    <State.Running: 2>

A :class:`WorkerClient` also drives the book's Go worker, which answers differently:
``GET /tasks`` with no tasks is ``null`` (an empty list here), lists come in random
order, ``POST /tasks`` answers JSON labelled ``text/plain``, ``/stats`` is ``null``
before its first sample (``None`` here: "no figures yet"), it has no ``/health``
(:meth:`WorkerClient.alive` then asks ``/stats``), and its handlers crash on
``GET /tasks/{id}`` of a task it holds and on ``DELETE`` of one it does not, closing
the connection without an answer: :meth:`Client.task` then finds the task in the list,
and :meth:`Client.stop` tells "not there" (404) from a connection that was lost.

With several managers, the leader gives its worker clients its signed epoch
(``WorkerClient(url, epoch=lambda: stamp)``, a :class:`cube.proof.Stamp`): every order
then carries it (``X-Cube-Epoch`` and its proof), and a worker that follows a newer
leader refuses the orders with :class:`DeposedLeader`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from http.client import RemoteDisconnected
from typing import Any, cast

import requests

from cube import tls
from cube.messages import NodeInfo
from cube.proof import HEADER as EPOCH_HEADER
from cube.proof import PROOF_HEADER, BadEpoch, Stamp, Unproven, read
from cube.task import State, Task, TaskEvent, ValidationError, wait_for_state


class CubeError(Exception):
    """An API answered with an error. ``status`` is the HTTP status code."""

    def __init__(self, status: int, message: str, url: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.url = status, message, url


class BadRequest(CubeError):
    """400/413/415: the request was malformed or invalid; nothing was changed."""


class Unauthorized(CubeError):
    """401: a token is required (set CUBE_TOKEN or pass ``token=``)."""


class Forbidden(CubeError):
    """403: the request was understood and refused: an order to a worker that does not
    believe the epoch it came with (no proof, or one that does not check), or a request
    whose token is of a role that may not do what it asks (:mod:`cube.roles`)."""


class NotFound(CubeError):
    """404: no such task (or route)."""


class Conflict(CubeError):
    """409: the task's state does not allow this (e.g. stopping a Completed task)."""


class DeposedLeader(Conflict):
    """409 from a worker that follows a newer leader than the epoch the order said.
    ``epoch`` is the one the worker follows, and ``stamp`` the stamp it says it follows
    with its proof (None if it sent none), for the manager to check before it believes
    that it was deposed."""

    def __init__(
        self, status: int, message: str, url: str = "", epoch: int = 0, stamp: Stamp | None = None
    ) -> None:
        super().__init__(status, message, url)
        self.epoch, self.stamp = epoch, stamp


class TooManyRequests(CubeError):
    """429: the server holds as many blocking queries as it will; ``retry_after`` says
    how many seconds to wait before asking again."""

    def __init__(self, status: int, message: str, url: str = "", retry_after: float = 1.0) -> None:
        super().__init__(status, message, url)
        self.retry_after = retry_after


class Gone(CubeError):
    """410: a watch asked from an index the server no longer has (it restarted, or the
    index is older than the history it keeps): list again from index 0."""


class Unreachable(CubeError):
    """No answer at all: connection refused, reset, or timed out."""


class NoAnswer(Unreachable):
    """The server took the request and closed the connection without answering (the Go
    worker's handlers do that when they crash)."""


class WillNotHappen(RuntimeError):
    """:meth:`Client.wait_for` gave up early: the task has settled in a state from which
    the awaited one cannot be reached. ``task`` is the task as last seen."""

    def __init__(self, task: Task, states: tuple[State, ...]) -> None:
        wanted = " or ".join(s.name for s in states)
        why = f": {task.reason}" if task.reason else ""
        super().__init__(
            f"task {task.name} ({str(task.id)[:8]}) is {task.state.name} and will not "
            f"become {wanted}{why}"
        )
        self.task, self.states = task, states


_BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
}
REVISION_HEADER = "X-Cube-Revision"  # what cube.manager.consistency reads and answers
ORDERS = frozenset({"POST", "PUT", "DELETE"})


class Client:
    """What both APIs share: tasks, health, and the error handling."""

    restarts = False  # does the other side restart a Failed task by itself?

    def __init__(self, url: str, token: str | None = None, timeout: float = 5.0) -> None:
        self.url = tls.base_url(url)
        self.url = self.url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self.verify: str | bool = tls.ca_file() or True  # CUBE_CACERT, else the system's
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def with_timeout(self, seconds: float) -> Client:
        """A client for the same API and credentials that waits at most ``seconds`` per
        call (widgets want an answer, or a clear "no answer", within a second)."""
        other = type(self)(self.url, timeout=seconds)
        other._session.headers.update(self._session.headers)
        other.verify = self.verify
        return other

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def tasks(self) -> list[Task]:
        """Every task (``null``, as a Go worker with none answers, is no tasks)."""
        return [Task.from_wire(t) for t in self._call("GET", "/tasks") or ()]

    def task(self, task_id: str | uuid.UUID) -> Task:
        try:
            data = self._call("GET", f"/tasks/{task_id}")
        except NoAnswer:
            return self._listed(task_id)
        if not isinstance(data, dict):
            raise ValidationError("Task", f"expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        data.pop("Runtime", None)
        return Task.from_wire(data)

    def _listed(self, task_id: str | uuid.UUID) -> Task:
        """The task as the list shows it, or :class:`NotFound`."""
        for task in self.tasks():
            if str(task.id) == str(task_id):
                return task
        raise NotFound(404, f"no task with ID {task_id}", f"{self.url}/tasks/{task_id}")

    def submit(self, work: Task | TaskEvent | dict[str, Any]) -> Task:
        """Post a Task (wrapped in a "run" event), a TaskEvent, or raw JSON."""
        if isinstance(work, Task):
            work = TaskEvent(task=work)
        body = work.to_wire() if isinstance(work, TaskEvent) else work
        return Task.from_wire(self._call("POST", "/tasks", json=body))

    def stop(self, task_id: str | uuid.UUID, generation: int | None = None) -> None:
        """Stop a task: :class:`NotFound` when it is not there. A worker given the
        order's ``generation`` refuses (409) a stop older than the order it follows."""
        params = {"generation": generation} if generation is not None else None
        for attempt in (1, 2):
            try:
                self._call("DELETE", f"/tasks/{task_id}", params=params)
                return
            except NoAnswer:
                self._listed(task_id)  # NotFound: what a Go worker's crash meant
                if attempt == 2:
                    raise

    def wait_for(self, task_id: str | uuid.UUID, *states: State, timeout: float = 10.0) -> Task:
        """Ask every 50 ms until the task is in one of ``states`` (an API has no push;
        in-process, :meth:`cube.manager.Manager.wait_for` wakes on the change itself).

        Raises :class:`WillNotHappen`, with the task's state and reason, as soon as the
        task settles where none of ``states`` can follow (a stopped task will never run),
        rather than sitting out the timeout; :class:`TimeoutError` when time runs out."""

        def get() -> Task:
            task = self.task(task_id)
            if task.state not in states and not reachable(task, states, self.restarts):
                raise WillNotHappen(task, states)
            return task

        return wait_for_state(get, states, timeout, lambda left: time.sleep(min(0.05, left)))

    def logs(self, task_id: str | uuid.UUID, tail: int = 200) -> str:
        return self._call("GET", f"/tasks/{task_id}/logs", params={"tail": tail})["Logs"]

    def watch(self, path: str, index: int, wait: float = 30.0, **params: Any) -> tuple[Any, int]:
        """A blocking query: ``path``'s answer once it changed after ``index`` (or after
        ``wait`` seconds), and the index to ask with next. ``index`` 0 answers at once.

        An index the server no longer has (410: it restarted) starts over: the answer is
        then the whole of ``path`` again, as at index 0. A delta (``since`` among
        ``params``) cannot start over by itself: :class:`Gone` tells the caller to. A
        server that holds all the blocking queries it will (429) is asked again after the
        ``Retry-After`` it said, with a plain read."""
        query = {**params, "index": index, "wait": f"{wait:g}s"} if index else params
        began = time.monotonic()
        try:
            response = self.get_raw(path, params=query or None, timeout=self.timeout + wait)
        except Gone:
            if not index or "since" in params:
                raise
            return self.watch(path, 0, wait, **params)
        except TooManyRequests as busy:  # the server holds all the watches it will
            time.sleep(min(busy.retry_after, wait))  # as it asked; then read without one
            response = self.get_raw(path, params=params or None)
        header = response.headers.get("X-Cube-Index", "0")
        now = int(header) if header.isdigit() else 0
        if index and now == index and time.monotonic() - began < wait / 2:
            time.sleep(min(1.0, wait))  # answered early with no change (a stopping server)
        return response.json(), now

    def close(self) -> None:
        self._session.close()

    def get_raw(
        self, path: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> requests.Response:
        """GET ``path``; the response itself (for its headers), errors raised as usual."""
        return self._request("GET", path, params=params, timeout=timeout or self.timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()  # whatever the label: the Go worker says text/plain

    def _headers(self, method: str) -> dict[str, str]:
        """Headers for this one request, besides the session's."""
        return {}

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.url + path
        kwargs.setdefault("verify", self.verify)  # per call: a session's yields to the env
        kwargs.setdefault("timeout", self.timeout)
        extra = self._headers(method)
        if extra:
            kwargs["headers"] = {**kwargs.get("headers", {}), **extra}
        try:
            response = self._session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            if _closed_without_answer(exc):
                why = f"{self.url} closed the connection without answering"
                raise NoAnswer(0, why, url) from None
            raise Unreachable(0, f"cannot reach {self.url}: {_short(exc)}", url) from None
        if response.status_code >= 400:
            raise _error(response, url)
        return response

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WorkerClient(Client):
    """Talks to one worker (``cube worker``, default port 5556): ours or the book's.

    ``epoch``, when given (and settable later), is asked before every order (``POST``,
    ``PUT``, ``DELETE``): the signed stamp of the leader this client speaks for, sent as
    ``X-Cube-Epoch`` and its proof. None (one manager, the default) sends nothing, and
    reads never carry it."""

    _has_health: bool | None = None  # unknown until asked; a Go worker has no /health

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 5.0,
        epoch: Callable[[], Stamp | None] | None = None,
    ) -> None:
        super().__init__(url, token, timeout)
        self.epoch = epoch

    def with_timeout(self, seconds: float) -> WorkerClient:
        other = cast(WorkerClient, super().with_timeout(seconds))
        other.epoch = self.epoch
        return other

    def _headers(self, method: str) -> dict[str, str]:
        if method not in ORDERS or self.epoch is None:
            return {}
        stamp = self.epoch()
        return stamp.headers() if stamp is not None else {}

    def follow(self) -> None:
        """Tell the worker this client's leader leads (``PUT /leader``): from then on it
        refuses the orders of any older one. :class:`DeposedLeader` when it follows a
        newer one."""
        self._call("PUT", "/leader")

    def stats(self) -> Any:
        """The worker's machine statistics as it sent them: ``None`` when it has none yet
        (a Go worker answers ``null`` before its first sample). Whether they are usable
        is :func:`cube.node.stats_problem`'s to say (the declared
        :class:`cube.messages.Stats`), so a manager can mark a worker that sends
        nonsense as down, saying why."""
        return self._call("GET", "/stats")

    def alive(self, timeout: float = 1.0) -> bool:
        """Liveness: ``GET /health`` within ``timeout`` seconds; for a worker without
        that route (the Go one answers 404), ``GET /stats`` instead, remembered."""
        if self._has_health is not False:
            try:
                self._call("GET", "/health", timeout=timeout)
                self._has_health = True
                return True
            except NotFound:
                self._has_health = False
            except CubeError:
                return False
        try:
            self._call("GET", "/stats", timeout=timeout)
        except CubeError:
            return False
        return True

    def runtime_status(self, task_id: str | uuid.UUID) -> dict[str, Any] | None:
        """What the worker's runtime says about the task's container right now (None
        when it cannot say: no container yet, or a Go worker)."""
        try:
            data = self._call("GET", f"/tasks/{task_id}")
        except NoAnswer:
            self._listed(task_id)
            return None
        return data.get("Runtime") if isinstance(data, dict) else None


class Revision:
    """The highest etcd revision a client's writes were answered with
    (``X-Cube-Revision``), shared by its clients for every manager of one cluster."""

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._lock = threading.Lock()

    def heard(self, text: str) -> None:
        if text.isascii() and text.isdigit():
            with self._lock:
                self.value = max(self.value, int(text))


class ManagerClient(Client):
    """Talks to the manager (``cube manager``, default port 5555).

    With several managers on etcd it reads its own writes whichever it asks: it keeps
    the revision each submission and stop was answered with (``X-Cube-Revision``) and
    sends the highest back on every request, which the manager catches up to first
    (:mod:`cube.manager.consistency`). :meth:`at` gives a client for another manager
    that shares what this one has written."""

    restarts = True

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 5.0,
        revision: Revision | None = None,
    ) -> None:
        super().__init__(url, token, timeout)
        self.revision = revision or Revision()

    def at(self, url: str) -> ManagerClient:
        """A client for the manager at ``url``, with the same credentials, reading what
        this one wrote."""
        other = ManagerClient(url, timeout=self.timeout, revision=self.revision)
        other._session.headers.update(self._session.headers)
        other.verify = self.verify
        return other

    def with_timeout(self, seconds: float) -> ManagerClient:
        other = cast(ManagerClient, super().with_timeout(seconds))
        other.revision = self.revision
        return other

    def _headers(self, method: str) -> dict[str, str]:
        seen = self.revision.value
        return {REVISION_HEADER: str(seen)} if seen else {}

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = super()._request(method, path, **kwargs)
        self.revision.heard(response.headers.get(REVISION_HEADER, ""))
        return response

    def nodes(self) -> list[dict[str, Any]]:
        """The workers, each with every field of :class:`cube.node.NodeInfo` (a Go
        manager's have only the book's; ours are filled in with their defaults)."""
        return [NodeInfo.from_wire(n, "Node").to_wire() for n in self._call("GET", "/nodes") or ()]

    def events(self, limit: int = 0) -> list[TaskEvent]:
        """The newest events first (``limit`` 0: all)."""
        params = {"limit": limit} if limit else None
        return [TaskEvent.from_wire(e) for e in self._call("GET", "/events", params=params)]


def _error(response: requests.Response, url: str) -> CubeError:
    """The typed error an answer of 400 or more stands for, with the server's message.
    A 409 that says which epoch the worker follows is a :class:`DeposedLeader`."""
    try:
        message = response.json()["Message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason
    status = response.status_code
    followed = response.headers.get(EPOCH_HEADER, "")
    if status == 409 and followed.isascii() and followed.isdigit():
        try:
            stamp = read(followed, response.headers.get(PROOF_HEADER))
        except (BadEpoch, Unproven):
            stamp = None
        return DeposedLeader(status, message, url, int(followed), stamp)
    if status == 429:
        after = response.headers.get("Retry-After", "")
        wait = float(after) if after.isascii() and after.isdigit() else 1.0
        return TooManyRequests(status, message, url, min(wait, 60.0))
    error = CubeError if status >= 500 else _BY_STATUS.get(status, BadRequest)
    return error(status, message, url)


def reachable(task: Task, states: tuple[State, ...], restarts: bool) -> bool:
    """Can ``task`` still get to one of ``states``? Not from Completed (nothing leaves
    it), nor from a Failed task that nobody will restart, which can only be stopped: a
    worker never restarts a task by itself, and a manager does not once it has given up
    or been asked to stop it."""
    if task.state is State.Completed:
        return False
    if task.state is State.Failed and not (restarts and _restart_coming(task)):
        return State.Completed in states
    return True


def _restart_coming(task: Task) -> bool:
    """Will the manager restart this Failed task? Yes while one is due, or unless it has
    said it gave up or was asked to stop it."""
    if task.restart_at is not None:
        return True
    return task.desired is not State.Completed and not task.reason.startswith("gave up")


def _closed_without_answer(exc: BaseException) -> bool:
    """Whether the server closed the connection after taking the request, with no
    answer at all (not: refused it, or did not answer in time)."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, RemoteDisconnected):
            return True
        args = [a for a in getattr(seen, "args", ()) if isinstance(a, BaseException)]
        seen = args[-1] if args else seen.__cause__ or seen.__context__
    return False


def _short(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "timed out", "Name or service not known", "reset"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200] if text else type(exc).__name__
