"""The Docker runtime: each task is one container on the local Docker engine.

Containers are named after the worker and the task ID (never the task's Name, which
need not be unique) and labelled with both, so a restarted worker finds what it started.
Ports are published on ``host_ip`` only (127.0.0.1 by default), never on every
interface, and nothing in a task can ask for privileges, host networking or mounts.

The client is made lazily with API-version negotiation and made again after a
connection error, so a worker that starts before dockerd, or outlives a restart of it,
carries on by itself; meanwhile every call raises :class:`RuntimeUnavailable`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound, NullResource
from docker.models.containers import Container
from docker.models.images import Image

from cube.feasibility import can_run
from cube.runtime import (
    Capabilities,
    Managed,
    PortMap,
    RuntimeFailure,
    RuntimeUnavailable,
    Started,
    Status,
    UnknownImage,
    attempt_label,
)
from cube.task import Task

LABEL_TASK_ID = "cube.task-id"
LABEL_OWNER = "cube.owner"
LABEL_TASK_NAME = "cube.task-name"
LABEL_ATTEMPT = "cube.attempt"

API_TIMEOUT = 30
KEPT_LINES = 1000  # of a stopped container's output, kept until its task is forgotten
CAPABILITY_TTL = 5.0
REGISTRY = "https://registry-1.docker.io/v2/"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"

_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")
_ID_SAFE = re.compile(r"[0-9a-f]{12,64}")
_PORT_TAKEN = re.compile(
    r"(?:Bind for|listen \w+) (\S+):(\d+)(?: failed)?: "
    r"(?:port is already allocated|bind: address already in use)"
)


def container_name(owner: str, task: Task) -> str:
    """``cube-<owner>-<task id>``: unique per task, and readable in ``docker ps``."""
    safe_owner = _NAME_UNSAFE.sub("-", owner).strip("-._")[:63] or "worker"
    return f"cube-{safe_owner}-{task.id}"


class DockerRuntime:
    """Runs tasks as containers; see the module docstring for the guarantees.

    A ``client`` passed in is used as is (and not replaced after connection errors,
    since this runtime does not know how it was configured)."""

    name = "docker"

    def __init__(
        self,
        owner: str,
        host_ip: str = "127.0.0.1",
        client: docker.DockerClient | None = None,
        stop_timeout: int = 2,
        pulls: bool | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.owner = owner
        self.kept = Path(state_dir) / "logs" if state_dir is not None else None
        self._pulls = pulls  # None: find out whether a registry answers
        self.host_ip = host_ip
        self.stop_timeout = stop_timeout
        self._client = client
        self._replaceable = client is None
        self._lock = threading.Lock()
        self._capabilities: tuple[float, Capabilities] | None = None

    # ------------------------------------------------------------------ protocol

    def check(self, task: Task) -> None:
        """Refuse an image that is not here when this engine cannot pull (an answer the
        manager's placement takes to another worker)."""
        try:
            able = self._capabilities_now()
        except RuntimeUnavailable:
            return  # whether it could is for start to find out, and to say why not
        if can_run(task.image, self.name, able.images, able.pulls):
            raise UnknownImage(
                f"image {task.image!r} is not on this machine and no registry answers to "
                "pull it from"
            )

    def capabilities(self) -> Capabilities:
        """The images the engine has, and whether it can pull, remembered for
        ``CAPABILITY_TTL`` seconds (the manager asks with every liveness probe). With the
        daemon out of reach: nothing (so no task is placed here meanwhile)."""
        try:
            return self._capabilities_now()
        except RuntimeUnavailable:
            return Capabilities(self.name, (), False)

    def _capabilities_now(self) -> Capabilities:
        with self._lock:
            cached = self._capabilities
        if cached is not None and time.monotonic() - cached[0] < CAPABILITY_TTL:
            return cached[1]
        with self._connected() as client:
            tags = sorted({tag for image in client.images.list() for tag in image.tags})
        if self._pulls is None:
            self._pulls = registry_answers()
        able = Capabilities(self.name, tuple(tags), self._pulls)
        with self._lock:
            self._capabilities = (time.monotonic(), able)
        return able

    def start(self, task: Task) -> Started:
        """Pull if missing, create, start, and report the ports Docker picked."""
        with self._connected() as client:
            image = self._image(client, task.image)
            try:
                container = self._create(client, task, image)
            except APIError as exc:
                raise RuntimeFailure(
                    f"Docker could not create the container: {_reason(exc)}"
                ) from None
            try:
                container.start()
                container.reload()
            except APIError as exc:
                with suppress(APIError):  # the start's error is the one worth reporting
                    container.remove(v=True, force=True)
                raise RuntimeFailure(
                    f"Docker could not start the container: {_reason(exc)}"
                ) from None
        return Started(container_id=container.id, host_ports=_host_ports(container.attrs))

    def stop(self, container_id: str) -> None:
        """Stop gracefully (``stop_timeout`` seconds), keep its last output, then remove
        it with its volumes."""
        with self._connected() as client:
            try:
                container = client.containers.get(container_id)
                container.stop(timeout=self.stop_timeout)
                self._keep(client, container.id)
                container.remove(v=True, force=True)
            except (NotFound, NullResource):
                return
            except APIError as exc:
                if exc.status_code == 409 and "already in progress" in _reason(exc):
                    return
                raise RuntimeFailure(
                    f"Docker could not stop container {container_id[:12]}: {_reason(exc)}"
                ) from None

    def kill(self, container_id: str) -> None:
        """SIGKILL the container and leave it, exited, as a crash would."""
        with self._connected() as client:
            try:
                client.containers.get(container_id).kill()
            except (NotFound, NullResource):
                return
            except APIError as exc:
                if exc.status_code != 409:  # 409: it is not running any more
                    raise RuntimeFailure(f"Docker refused: {_reason(exc)}") from None

    def inspect(self, container_id: str) -> Status:
        with self._connected() as client:
            try:
                container = client.containers.get(container_id)
            except (NotFound, NullResource):
                return _missing(container_id)
        return _status(container.attrs)

    def logs(self, container_id: str, tail: int = 200) -> str:
        """Stdout and stderr interleaved as Docker stored them; of a removed container,
        what :meth:`stop` kept."""
        with self._connected() as client:
            try:
                raw = client.api.logs(container_id, stdout=True, stderr=True, tail=tail)
            except (NotFound, NullResource):
                kept = self._kept(container_id)
                if kept is None:
                    raise RuntimeFailure(_missing(container_id).reason) from None
                return "".join(kept.splitlines(keepends=True)[-tail:] if tail else [])
        return raw.decode("utf-8", errors="replace")

    def forget(self, container_id: str) -> None:
        if self.kept is not None and _ID_SAFE.fullmatch(container_id):
            (self.kept / f"{container_id}.log").unlink(missing_ok=True)

    def _keep(self, client: docker.DockerClient, container_id: str) -> None:
        """Save a container's last output before it is removed (Docker drops it)."""
        if self.kept is None:
            return
        try:
            raw = client.api.logs(container_id, stdout=True, stderr=True, tail=KEPT_LINES)
        except APIError as exc:
            if exc.status_code == 409:  # another stop is removing it: its output goes too
                return
            raise
        self.kept.mkdir(parents=True, exist_ok=True)
        (self.kept / f"{container_id}.log").write_bytes(raw)

    def _kept(self, container_id: str) -> str | None:
        if self.kept is None or not _ID_SAFE.fullmatch(container_id):
            return None
        try:
            return (self.kept / f"{container_id}.log").read_text(errors="replace")
        except FileNotFoundError:
            return None

    def list_managed(self) -> list[Managed]:
        with self._connected() as client:
            containers = client.containers.list(
                all=True, filters={"label": f"{LABEL_OWNER}={self.owner}"}, ignore_removed=True
            )
        return [
            Managed(c.labels[LABEL_TASK_ID], _status(c.attrs), c.labels.get(LABEL_ATTEMPT, ""))
            for c in containers
            if LABEL_TASK_ID in c.labels
        ]

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _connected(self) -> Iterator[docker.DockerClient]:
        """Yield a client; turn a lost connection into RuntimeUnavailable and drop the
        client, so the next call negotiates afresh with whatever dockerd is there then."""
        client = self._get_client()
        try:
            yield client
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._forget(client)
            raise _unavailable(exc) from None
        except APIError as exc:
            raise RuntimeFailure(f"Docker refused: {_reason(exc)}") from None

    def _get_client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = docker.from_env(version="auto", timeout=API_TIMEOUT)
                except DockerException as exc:
                    raise _unavailable(exc) from None
            return self._client

    def _forget(self, client: docker.DockerClient) -> None:
        with self._lock:
            if self._replaceable and self._client is client:
                self._client = None

    def _image(self, client: docker.DockerClient, ref: str) -> Image:
        """The local image, pulled only when missing (no registry round trip otherwise)."""
        try:
            return client.images.get(ref)
        except ImageNotFound:
            pass
        try:
            return client.images.pull(ref)
        except APIError as exc:
            raise UnknownImage(
                f"image {ref!r} is not on this machine and could not be pulled: {_reason(exc)}"
            ) from None

    def _create(self, client: docker.DockerClient, task: Task, image: Image) -> Container:
        """Create the container, replacing a leftover one of the same task (a restart)."""
        name = container_name(self.owner, task)
        options: dict[str, Any] = {
            "name": name,
            "labels": {
                LABEL_TASK_ID: str(task.id),
                LABEL_OWNER: self.owner,
                LABEL_TASK_NAME: task.name,
                LABEL_ATTEMPT: attempt_label(task),
            },
            "ports": self._ports(task, image),
            **_limits(task),
        }
        try:
            return client.containers.create(task.image, **options)
        except APIError as exc:
            if exc.status_code != 409:
                raise
        client.api.remove_container(name, v=True, force=True)
        return client.containers.create(task.image, **options)

    def _ports(self, task: Task, image: Image) -> dict[str, dict[str, str]]:
        """Every port the task or the image exposes, on ``host_ip``; the host port is
        the task's binding, or empty so that Docker picks a free one."""
        image_ports = image.attrs.get("Config", {}).get("ExposedPorts") or {}
        ports = set(task.exposed_ports) | set(task.port_bindings) | set(image_ports)
        return {
            port: {"HostIp": self.host_ip, "HostPort": task.port_bindings.get(port, "")}
            for port in sorted(ports)
        }


def registry_answers(url: str = REGISTRY, timeout: float = 2.0) -> bool:
    """Does Docker Hub's registry answer at all (any HTTP status)? Without it, an image
    that is not here cannot be pulled, and saying so lets the manager place the task
    elsewhere, or fail it at once, instead of failing it after a pull times out."""
    try:
        requests.get(url, timeout=timeout)
    except requests.RequestException:
        return False
    return True


def _limits(task: Task) -> dict[str, Any]:
    """Docker's resource options for what the task asks; zero and "" mean no limit."""
    limits: dict[str, Any] = {}
    if task.cpu > 0:
        limits["nano_cpus"] = int(task.cpu * 1e9)
    if task.memory > 0:
        limits["mem_limit"] = task.memory
    if task.restart_policy not in ("", "no"):
        limits["restart_policy"] = {"Name": task.restart_policy}
    return limits


def _status(attrs: dict[str, Any]) -> Status:
    state = attrs["State"]
    word = state["Status"]
    exit_code = state.get("ExitCode") if word in ("exited", "dead", "restarting") else None
    return Status(
        container_id=attrs["Id"],
        running=word == "running",
        state=word,
        exit_code=exit_code,
        reason=_state_reason(word, state),
        host_ports=_host_ports(attrs),
    )


def _state_reason(word: str, state: dict[str, Any]) -> str:
    """A sentence for anything but a running container."""
    code = state.get("ExitCode")
    reasons = {
        "running": "",
        "exited": f"container exited with code {code}",
        "dead": "container is dead (Docker could not remove or stop it cleanly)",
        "restarting": f"container is restarting (it exited with code {code})",
        "paused": "container is paused",
        "created": "container was created but never started",
        "removing": "container is being removed",
    }
    reason = reasons.get(word, f"container is {word}")
    if state.get("OOMKilled"):
        reason += " (killed for running out of memory: raise the task's Memory)"
    if state.get("Error"):
        reason += f": {_one_line(state['Error'])}"
    return reason


def _missing(container_id: str) -> Status:
    reason = f"container {container_id[:12]} no longer exists" if container_id else "no container"
    return Status(container_id=container_id, running=False, state="missing", reason=reason)


def _host_ports(attrs: dict[str, Any]) -> PortMap:
    """Published ports from an inspection, in Docker's port-map shape; unpublished
    ports (``None`` in Docker's map) are left out."""
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    return {
        port: [{"HostIp": b["HostIp"], "HostPort": b["HostPort"]} for b in bindings]
        for port, bindings in ports.items()
        if bindings
    }


def _reason(exc: APIError) -> str:
    """Docker's own explanation in one line; a taken host port said plainly."""
    text = str(exc.explanation or exc)
    taken = _PORT_TAKEN.search(text)
    if taken:
        return f"host port {taken[2]} on {taken[1]} is already in use"
    return _one_line(text)


def _unavailable(exc: BaseException) -> RuntimeUnavailable:
    where = os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
    return RuntimeUnavailable(
        f"cannot reach the Docker daemon at {where}: {_os_reason(exc)}; is dockerd running?"
    )


def _os_reason(exc: BaseException) -> str:
    """The operating system's word for it ("Connection refused") when there is one,
    found down the exception chain; docker and requests wrap it several times over."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.Timeout):
            return f"no answer within {API_TIMEOUT}s"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        inner = [a for a in seen.args if isinstance(a, BaseException)]
        seen = seen.__cause__ or seen.__context__ or (inner[0] if inner else None)
    return _one_line(str(exc)) or type(exc).__name__


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
