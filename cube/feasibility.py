"""Feasibility: which nodes could take a task, and why each of the others cannot.

Placement is two steps, as in Nomad's scheduler: named checks first filter the nodes,
each check that rejects a node saying why (Nomad counts these per constraint, and shows
them when an allocation cannot be placed), then a scheduler ranks the nodes left (see
:mod:`cube.scheduler`). The checks, in order:

========  ===========================================================================
up        the node answers its liveness probe
runtime   its runtime can run this kind of image at all (the process runtime runs
          only Cube's own ``cube/*`` programs: "no Docker")
image     a Docker node has the image, or can pull it
refused   the node did not refuse this very task before (it said it cannot run it)
cpu       the cores promised to tasks there, plus this one, fit its cores
memory    promised and measured memory both leave room for the task's
disk      likewise for disk
========  ===========================================================================

The resource checks work on whole numpy columns of a :class:`~cube.node.NodeTable`, so
the simulator runs these very checks over thousands of nodes. The runtime and image
checks need what a worker reports about itself; a table without that information (the
simulator's, or a Go worker that does not say) passes them.

A task no node can ever run (no runtime or image anywhere) should fail at once, the way
Kubernetes reports ErrImagePull; a task that waits for room or for a worker to come back
should wait. :class:`Verdict` tells the two apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cube.node import Demand, NodeTable, format_size

CHECKS = ("up", "runtime", "image", "refused", "cpu", "memory", "disk")
CAPABILITY_CHECKS = ("runtime", "image", "refused")


@dataclass(frozen=True)
class Verdict:
    """Why a task fits on no node. ``possible`` is False when no node could ever run
    it, whatever room it had (no runtime or image for it anywhere): waiting won't help."""

    reason: str
    possible: bool = True


def fits(task: Demand, nodes: NodeTable) -> np.ndarray:
    """Boolean mask: the nodes that pass every check.

    "In use" is the larger of promised and measured, so one comparison per resource
    covers both rules; the simulator calls this for every decision on thousands of nodes."""
    if task.cpu > 0:
        mask = nodes.cpu_allocated <= nodes.cores - (task.cpu - 1e-9)
        mask &= nodes.up
    else:
        mask = nodes.up.copy()
    if task.memory > 0:
        mask &= nodes.memory_in_use() <= nodes.memory - task.memory
    if task.disk > 0:
        mask &= nodes.disk_in_use() <= nodes.disk - task.disk
    if nodes.runtimes is not None:
        mask &= _capable(task, nodes)
    if nodes.refusals is not None:
        mask &= np.array([not why for why in nodes.refusals], dtype=bool)
    return mask


def explain(task: Demand, nodes: NodeTable) -> Verdict:
    """Why ``task`` fits on no node, counted per check: each node is charged to the
    first check it fails, e.g. "2 nodes: no Docker; 1 node: memory 512.0 MiB free <
    1.0 GiB asked"."""
    if len(nodes) == 0:
        return Verdict("no workers are configured")
    failing: dict[str, list[int]] = {}
    for i in range(len(nodes)):
        check = first_failure(task, nodes, i)
        if check:
            failing.setdefault(check, []).append(i)
    parts = [
        f"{len(ids)} node{'s' * (len(ids) != 1)}: {_PHRASES[check](task, nodes, ids)}"
        for check in CHECKS
        if (ids := failing.get(check))
    ]
    possible = len(nodes) > sum(len(failing.get(c, ())) for c in CAPABILITY_CHECKS)
    if not parts:  # each fits on its own; only the snapshot raced: try again
        return Verdict("no worker can take it right now")
    return Verdict("no worker can take it: " + "; ".join(parts), possible)


def first_failure(task: Demand, nodes: NodeTable, i: int) -> str:
    """The name of the first check node ``i`` fails for ``task``, or ""."""
    for check in CHECKS:
        if not _PASSES[check](task, nodes, i):
            return check
    return ""


def can_run(image: str, runtime: str, images: Sequence[str], pulls: bool) -> str:
    """ "" when a node with this runtime, these images and this pull setting can run
    ``image``; otherwise the check that says no ("runtime" or "image")."""
    if not runtime or not image:
        return ""  # a worker that does not say (the Go Cube's) is taken at its word
    name, _ = split_image(image)
    if runtime == "process":
        return "" if name in images else "runtime"
    if normal_image(image) in {normal_image(i) for i in images} or pulls:
        return ""
    return "image"


def split_image(image: str) -> tuple[str, str]:
    """``("repo/name", "tag")``; a digest counts as the tag, a missing tag is ""."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, ""


def normal_image(image: str) -> str:
    """How Docker names an image locally: ``busybox`` and ``docker.io/library/busybox``
    are both ``busybox:latest``."""
    name, tag = split_image(image)
    for prefix in ("docker.io/", "index.docker.io/"):
        name = name.removeprefix(prefix)
    name = name.removeprefix("library/")
    if not tag:
        return f"{name}:latest"
    return f"{name}{tag}" if tag.startswith("@") else f"{name}:{tag}"


# --------------------------------------------------------------------------- checks


def _capable(task: Demand, nodes: NodeTable) -> np.ndarray:
    image = getattr(task, "image", "")
    return np.array([not _refusal(image, nodes, i) for i in range(len(nodes))], dtype=bool)


def _refusal(image: str, nodes: NodeTable, i: int) -> str:
    """Which capability check node ``i`` fails for ``image`` ("" if none)."""
    if nodes.runtimes is None:
        return ""
    images = nodes.images[i] if nodes.images is not None else ()
    pulls = bool(nodes.pulls[i]) if nodes.pulls is not None else False
    return can_run(image, nodes.runtimes[i], images, pulls)


def _capability(check: str) -> Callable[[Demand, NodeTable, int], bool]:
    def passes(task: Demand, nodes: NodeTable, i: int) -> bool:
        return _refusal(getattr(task, "image", ""), nodes, i) != check

    return passes


def _free_cores(nodes: NodeTable, i: int) -> float:
    return float(nodes.cores[i] - nodes.cpu_allocated[i])


def _free_memory(nodes: NodeTable, i: int) -> float:
    return float(nodes.memory[i] - nodes.memory_in_use()[i])


def _free_disk(nodes: NodeTable, i: int) -> float:
    return float(nodes.disk[i] - nodes.disk_in_use()[i])


_PASSES: dict[str, Callable[[Any, NodeTable, int], bool]] = {
    "up": lambda task, nodes, i: bool(nodes.up[i]),
    "runtime": _capability("runtime"),
    "image": _capability("image"),
    "refused": lambda task, nodes, i: nodes.refusals is None or not nodes.refusals[i],
    "cpu": lambda task, nodes, i: task.cpu <= 0 or _free_cores(nodes, i) >= task.cpu - 1e-9,
    "memory": lambda task, nodes, i: task.memory <= 0 or _free_memory(nodes, i) >= task.memory,
    "disk": lambda task, nodes, i: task.disk <= 0 or _free_disk(nodes, i) >= task.disk,
}


def _resource(
    what: str, free: Callable[[NodeTable, int], float], want: Callable[[Any], float], fmt: Any
) -> Callable[[Any, NodeTable, list[int]], str]:
    def phrase(task: Any, nodes: NodeTable, ids: list[int]) -> str:
        most = max(max(free(nodes, i), 0.0) for i in ids)
        free_text = f"{fmt(most)} free" if len(ids) == 1 else f"at most {fmt(most)} free"
        return f"{what} {free_text} < {fmt(want(task))} asked".lstrip()

    return phrase


def _images_phrase(task: Any, nodes: NodeTable, ids: list[int]) -> str:
    image = normal_image(getattr(task, "image", ""))
    return f"no image {image} and cannot pull it"


def _runtime_phrase(task: Any, nodes: NodeTable, ids: list[int]) -> str:
    runs = sorted({image for i in ids for image in (nodes.images or [()] * len(nodes))[i]})
    return f"no Docker (runs only {', '.join(runs)})" if runs else "no Docker"


def _cores(n: float) -> str:
    return f"{n:g} cores"


_PHRASES: dict[str, Callable[[Any, NodeTable, list[int]], str]] = {
    "up": lambda task, nodes, ids: "down or not answering yet",
    "runtime": _runtime_phrase,
    "image": _images_phrase,
    "refused": lambda task, nodes, ids: (
        "refused it ("
        + "; ".join(sorted({(nodes.refusals or [""] * len(nodes))[i] for i in ids}))
        + ")"
    ),
    "cpu": _resource("", _free_cores, lambda t: t.cpu, _cores),
    "memory": _resource("memory", _free_memory, lambda t: t.memory, format_size),
    "disk": _resource("disk", _free_disk, lambda t: t.disk, format_size),
}
