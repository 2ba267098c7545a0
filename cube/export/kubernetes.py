"""Cube tasks as Kubernetes manifests: a Deployment each, and a Service for its ports.

==================  ==========================================================
Cube task           Kubernetes (apps/v1 Deployment, v1 Service)
==================  ==========================================================
Name                object, container and label names (as a DNS label)
ID                  the ``cube/task-id`` annotation
Image               the container's image
Cpu                 ``resources`` requests and limits (``cpu``, in millicores)
Memory              ``resources`` requests and limits (``memory``)
Disk                ``resources`` requests and limits (``ephemeral-storage``)
ExposedPorts        ``containerPort`` entries, and a ClusterIP Service for them
HealthCheck         an HTTP ``livenessProbe`` on the port Cube probes
(the manager)       probe period and timeout from ``Options``; one failure restarts
RestartPolicy       caveat: a Deployment's pods always restart (``Always``)
PortBindings        caveat: a fixed port on the node is a NodePort or hostPort
Cube's restarts     caveat: the kubelet restarts without limit, 10 s doubling to 5 min
==================  ==========================================================

Requests equal limits, as Cube's Docker runtime enforces what a task asks for as its
limit; that also gives the pod the Guaranteed quality of service.
"""

from __future__ import annotations

from typing import Any

from cube.export.common import (
    RUNTIME_NOTE,
    Caveat,
    Exported,
    Options,
    Port,
    health_port,
    image_caveats,
    names,
    ports,
    restart_field_caveat,
    seconds,
)
from cube.task import Task

NAME_LABEL = "app.kubernetes.io/name"
ID_ANNOTATION = "cube/task-id"


def export(tasks: list[Task], options: Options) -> Exported:
    """Manifests for ``tasks``, as one YAML stream with the caveats as comments."""
    caveats: list[Caveat] = []
    blocks, documents = [], []
    for task, name in zip(tasks, names(tasks, caveats), strict=True):
        own: list[Caveat] = []
        docs = manifests(task, name, options, own)
        caveats += own
        documents += docs
        blocks.append(_yaml(docs, task, own))
    header = (
        f"# Kubernetes manifests for {len(tasks)} Cube task(s), made by `cube export`.\n"
        f"# Apply with `kubectl apply -f FILE`. {RUNTIME_NOTE}\n"
    )
    return Exported("kubernetes", header + "---\n".join(blocks), documents, caveats)


def manifests(task: Task, name: str, options: Options, caveats: list[Caveat]) -> list[dict]:
    """A Deployment for ``task`` named ``name``, and a Service when it has ports."""
    image_caveats(task, caveats)
    restart_field_caveat(task, "Kubernetes", caveats)
    _restart_caveat(task, options, caveats)
    found = ports(task, caveats)
    _binding_caveats(task, caveats)
    docs = [_deployment(task, name, found, options, caveats)]
    if found:
        docs.append(_service(name, found))
    return docs


def _deployment(
    task: Task, name: str, found: list[Port], options: Options, caveats: list[Caveat]
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": task.image}
    if found:
        container["ports"] = [
            {"name": p.label, "containerPort": p.number, "protocol": p.protocol.upper()}
            for p in found
        ]
    resources = _resources(task)
    if resources:
        container["resources"] = {"requests": resources, "limits": dict(resources)}
    probe = health_port(task, found, caveats)
    if probe is not None:
        container["livenessProbe"] = _probe(task, probe, options, caveats)
    labels = {NAME_LABEL: name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": {ID_ANNOTATION: str(task.id)}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"restartPolicy": "Always", "containers": [container]},
            },
        },
    }


def _service(name: str, found: list[Port]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {NAME_LABEL: name}},
        "spec": {
            "type": "ClusterIP",
            "selector": {NAME_LABEL: name},
            "ports": [
                {
                    "name": p.label,
                    "port": p.number,
                    "targetPort": p.label,
                    "protocol": p.protocol.upper(),
                }
                for p in found
            ],
        },
    }


def _resources(task: Task) -> dict[str, str]:
    """Kubernetes quantities for what the task asks (nothing for what it leaves at 0)."""
    out = {}
    if task.cpu > 0:
        out["cpu"] = _millicores(task.cpu)
    if task.memory > 0:
        out["memory"] = _bytes(task.memory)
    if task.disk > 0:
        out["ephemeral-storage"] = _bytes(task.disk)
    return out


def _millicores(cores: float) -> str:
    """``0.5`` is ``500m``, ``2`` is ``2``. Kubernetes counts CPU in thousandths of a
    core, and Cube's task files cannot ask for less (Cpu is a number of cores)."""
    milli = max(1, round(cores * 1000))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _bytes(n: int) -> str:
    """Bytes with the largest binary suffix that divides them exactly (``256Mi``)."""
    for suffix, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def _probe(task: Task, port: Port, options: Options, caveats: list[Caveat]) -> dict[str, Any]:
    caveats.append(
        Caveat(
            task.name,
            "HealthCheck",
            "Kubernetes also counts 3xx answers as healthy; Cube wants a 2xx",
        )
    )
    return {
        "httpGet": {"path": task.health_check, "port": port.label},
        "periodSeconds": seconds(options.health_interval),
        "timeoutSeconds": seconds(options.health_timeout),
        "failureThreshold": 1,
    }


def _restart_caveat(task: Task, options: Options, caveats: list[Caveat]) -> None:
    policy = options.restart
    caveats.append(
        Caveat(
            task.name,
            "restarts",
            f"Cube gives up after {policy.limit} restarts, waiting {policy.base:g} s "
            f"doubling to {policy.cap:g} s; the kubelet restarts a Deployment's containers "
            "without limit, waiting 10 s doubling to 5 min",
        )
    )


def _binding_caveats(task: Task, caveats: list[Caveat]) -> None:
    for port, host in sorted(task.port_bindings.items()):
        if host:
            caveats.append(
                Caveat(
                    task.name,
                    "PortBindings",
                    f"{port} on host port {host} is not exported: pods are reached through "
                    "the Service; a fixed port on every node is a NodePort Service "
                    "(30000-32767) or a container hostPort",
                )
            )


def _yaml(docs: list[dict], task: Task, caveats: list[Caveat]) -> str:
    try:
        import yaml
    except ImportError:
        raise ImportError(
            "exporting to Kubernetes needs PyYAML: pip install 'cube[export]'"
        ) from None
    head = f"# Cube task {task.name} ({task.id})\n"
    head += "".join(f"# warning: {c.field}: {c.message}\n" for c in caveats)
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
    return head + body
