"""Feasibility checks on small hand-made clusters: which node passes, and the reasons."""

from dataclasses import dataclass

import pytest

from cube.feasibility import can_run, explain, first_failure, fits, normal_image, split_image
from cube.node import Node, NodeTable
from cube.scheduler import make, place

GIB = 1 << 30
MIB = 1 << 20


@dataclass
class Want:
    image: str = "cube/echo"
    cpu: float = 0.0
    memory: int = 0
    disk: int = 0


def node(name: str, runtime: str, images: tuple[str, ...] = (), pulls: bool = False) -> Node:
    n = Node(name=name, api=f"http://{name}", state="up", cores=4, memory=8 * GIB, disk=GIB)
    n.runtime, n.images, n.pulls = runtime, images, pulls
    return n


def mixed() -> NodeTable:
    """Two process workers and one Docker worker holding cube/busybox only."""
    return NodeTable.from_nodes(
        [
            node("p1", "process", ("cube/echo", "cube/busybox")),
            node("p2", "process", ("cube/echo", "cube/busybox")),
            node("d1", "docker", ("cube/busybox:latest",)),
        ]
    )


def test_image_names_as_docker_sees_them():
    assert split_image("localhost:5000/a/b:1.2") == ("localhost:5000/a/b", "1.2")
    assert split_image("nginx") == ("nginx", "")
    assert normal_image("docker.io/library/busybox") == "busybox:latest"
    assert normal_image("cube/echo:bad-exit") == "cube/echo:bad-exit"
    assert normal_image("a@sha256:" + "0" * 64) == "a@sha256:" + "0" * 64


def test_runtime_and_image_rules():
    assert can_run("cube/echo:bad-exit", "process", ("cube/echo",), False) == ""
    assert can_run("nginx:1.27", "process", ("cube/echo",), True) == "runtime"
    assert can_run("cube/busybox", "docker", ("cube/busybox:latest",), False) == ""
    assert can_run("cube/echo", "docker", ("cube/busybox:latest",), False) == "image"
    assert can_run("cube/echo", "docker", (), True) == ""  # it can pull
    assert can_run("anything", "", (), False) == ""  # a worker that does not say


def test_a_docker_image_goes_to_the_docker_worker_and_cube_echo_not():
    table = mixed()
    assert fits(Want("cube/busybox:latest"), table).tolist() == [True, True, True]
    assert fits(Want("nginx:1.27"), table).tolist() == [False, False, False]
    assert fits(Want("cube/echo"), table).tolist() == [True, True, False]
    for name in ("roundrobin", "epvm", "greedy", "bestfit"):
        assert place(make(name), Want("cube/echo"), table).index in (0, 1)


def test_an_image_no_node_can_run_is_not_worth_waiting_for():
    verdict = explain(Want("nginx:1.27"), mixed())
    assert verdict.reason == (
        "no worker can take it: 2 nodes: no Docker (runs only cube/busybox, cube/echo); "
        "1 node: no image nginx:1.27 and cannot pull it"
    )
    assert not verdict.possible
    placement = place(make("epvm"), Want("nginx:1.27"), mixed())
    assert placement.index is None and not placement.possible


def test_room_is_worth_waiting_for_and_each_node_is_charged_to_its_first_failure():
    table = mixed()
    table.up[0] = False
    table.memory_used[1] = 8 * GIB - 512 * MIB
    verdict = explain(Want("cube/echo", memory=GIB), table)
    assert verdict.reason == (
        "no worker can take it: 1 node: down or not answering yet; "
        "1 node: no image cube/echo:latest and cannot pull it; "
        "1 node: memory 512.0 MiB free < 1.0 GiB asked"
    )
    assert verdict.possible
    failures = [first_failure(Want("cube/echo", memory=GIB), table, i) for i in range(3)]
    assert failures == ["up", "memory", "image"]


@pytest.mark.parametrize("cpu,ok", [(4, True), (4.5, False)])
def test_cpu_is_checked_against_promised_cores(cpu, ok):
    table = mixed()
    assert fits(Want("cube/echo", cpu=cpu), table).tolist()[:2] == [ok, ok]
