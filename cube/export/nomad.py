"""Cube tasks as a Nomad job, in the JSON form Nomad's HTTP API takes (``POST /v1/jobs``)
and ``nomad job run -json`` reads.

==================  ==========================================================
Cube task           Nomad job (one task group per Cube task)
==================  ==========================================================
Name                group, task and service names (as a DNS label); a single task
                    also names the job
ID                  the group's ``cube_task_id`` meta
Image               the docker driver's ``image``
Cpu                 ``Resources.CPU`` in MHz (``Options.mhz_per_core`` a core), with
                    ``cpu_hard_limit`` as Docker enforces Cube's Cpu
Memory              ``Resources.MemoryMB``
Disk                the group's ``EphemeralDisk.SizeMB``
ExposedPorts        dynamic ports mapped ``To`` the container ports
PortBindings        static (reserved) ports: the same host port
HealthCheck         an ``http`` check on a Nomad service, restarting the task on
                    a failure (``check_restart``), at the manager's interval
Cube's restarts     the ``restart`` block: ``Options.restart.limit`` attempts, then
                    fail, and no rescheduling (Cube's task stays Failed)
RestartPolicy       caveat: Nomad restarts the container itself
==================  ==========================================================

Durations are nanoseconds, as in Nomad's JSON.
"""

from __future__ import annotations

import json
from typing import Any

from cube.export.common import (
    Caveat,
    Exported,
    Options,
    Port,
    health_port,
    image_caveats,
    mebibytes,
    names,
    ports,
    restart_field_caveat,
)
from cube.task import Task

SECOND = 1_000_000_000  # nanoseconds
RESTART_WINDOW = 24 * 3600 * SECOND


def export(tasks: list[Task], options: Options) -> Exported:
    """One job for ``tasks``: named after the task when there is one, else ``options.job``."""
    caveats: list[Caveat] = []
    labels = names(tasks, caveats)
    groups = [_group(t, name, options, caveats) for t, name in zip(tasks, labels, strict=True)]
    job_id = labels[0] if len(tasks) == 1 else options.job
    document = {
        "Job": {
            "ID": job_id,
            "Name": job_id,
            "Type": "service",
            "Datacenters": ["*"],
            "TaskGroups": groups,
        }
    }
    return Exported("nomad", json.dumps(document, indent=2) + "\n", [document], caveats)


def _group(task: Task, name: str, options: Options, caveats: list[Caveat]) -> dict[str, Any]:
    image_caveats(task, caveats)
    restart_field_caveat(task, "Nomad", caveats)
    found = ports(task, caveats)
    group: dict[str, Any] = {
        "Name": name,
        "Count": 1,
        "Meta": {"cube_task_id": str(task.id)},
        "RestartPolicy": _restarts(task, options, caveats),
        "ReschedulePolicy": {"Attempts": 0, "Interval": 0, "Unlimited": False},
        "Tasks": [_task(task, name, found, options, caveats)],
    }
    if found:
        group["Networks"] = [_network(task, found)]
    if task.disk > 0:
        group["EphemeralDisk"] = {"SizeMB": mebibytes(task, "Disk", task.disk, caveats)}
    return group


def _task(
    task: Task, name: str, found: list[Port], options: Options, caveats: list[Caveat]
) -> dict[str, Any]:
    config: dict[str, Any] = {"image": task.image}
    if found:
        config["ports"] = [p.label for p in found]
    if task.cpu > 0:
        config["cpu_hard_limit"] = True
    out: dict[str, Any] = {
        "Name": name,
        "Driver": "docker",
        "Config": config,
        "Resources": _resources(task, options, caveats),
    }
    probe = health_port(task, found, caveats)
    if probe is not None:
        out["Services"] = [_service(task, name, probe, options)]
    return out


def _resources(task: Task, options: Options, caveats: list[Caveat]) -> dict[str, int]:
    resources = {}
    if task.cpu > 0:
        resources["CPU"] = max(1, round(task.cpu * options.mhz_per_core))
    else:
        caveats.append(
            Caveat(task.name, "Cpu", "none asked for; Nomad reserves its default, 100 MHz")
        )
    if task.memory > 0:
        resources["MemoryMB"] = mebibytes(task, "Memory", task.memory, caveats)
    else:
        caveats.append(
            Caveat(task.name, "Memory", "none asked for; Nomad reserves its default, 300 MB")
        )
    return resources


def _network(task: Task, found: list[Port]) -> dict[str, Any]:
    """Dynamic host ports mapped to the container's, or the fixed ones PortBindings ask."""
    dynamic, reserved = [], []
    for port in found:
        host = task.port_bindings.get(f"{port.number}/{port.protocol}", "")
        if host:
            reserved.append({"Label": port.label, "Value": int(host), "To": port.number})
        else:
            dynamic.append({"Label": port.label, "To": port.number})
    network: dict[str, Any] = {}
    if dynamic:
        network["DynamicPorts"] = dynamic
    if reserved:
        network["ReservedPorts"] = reserved
    return network


def _service(task: Task, name: str, port: Port, options: Options) -> dict[str, Any]:
    interval = round(options.health_interval * SECOND)
    return {
        "Name": name,
        "Provider": "nomad",
        "PortLabel": port.label,
        "Checks": [
            {
                "Name": f"{name}-health",
                "Type": "http",
                "Path": task.health_check,
                "PortLabel": port.label,
                "Interval": interval,
                "Timeout": round(options.health_timeout * SECOND),
                "CheckRestart": {"Limit": 1, "Grace": interval, "IgnoreWarnings": False},
            }
        ],
    }


def _restarts(task: Task, options: Options, caveats: list[Caveat]) -> dict[str, Any]:
    policy = options.restart
    caveats.append(
        Caveat(
            task.name,
            "restarts",
            f"Nomad waits a fixed {policy.base:g} s (plus up to 25% jitter) between "
            f"restarts where Cube doubles the wait up to {policy.cap:g} s, and counts the "
            f"{policy.limit} attempts per 24 h where Cube counts them for the task's life",
        )
    )
    return {
        "Attempts": policy.limit,
        "Interval": RESTART_WINDOW,
        "Delay": round(policy.base * SECOND),
        "Mode": "fail",
    }
