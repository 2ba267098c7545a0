"""The numbers behind the wire library: msgspec or pydantic v2.

The same Task, with the same field names, Go's JSON shape and the rules a store is
read with, declared in each library: msgspec's is Cube's own (:class:`cube.task.Task`),
pydantic's is written out below. Both must decode every stored task and encode it
back to the very JSON it was stored as (checked before timing). Then:

- decode 10,000 stored tasks, from their JSON text, and from ``json.loads`` output (the
  way a store hands them over);
- encode a list of 1,000 tasks (and, for Cube, the same list again from its cache, as
  ``GET /tasks`` answers a second time);
- import the library and build the declaration, in a fresh interpreter (the CLI pays
  this on every run).

Run: ``python -m bench bench_wire``. pydantic is a dev dependency, for this comparison
only; without it, its rows are skipped.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from bench.common import header
from cube.fields import PortSet, format_time
from cube.http import ListCache
from cube.task import State, Task
from cube.wire import decode_json, encode

STORED = 10_000
LISTED = 1_000
ROUNDS = 5


def stored_tasks(n: int) -> list[str]:
    """JSON texts of tasks in every state, as a manager's store holds them."""
    rng = random.Random(1)
    now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    texts = []
    for i in range(n):
        state = rng.choice(list(State))
        started = now + timedelta(seconds=rng.random() * 1000) if state >= State.Running else None
        task = Task(
            f"web-{i}",
            rng.choice(["cube/echo", "nginx:1.27", "cube/busybox:latest"]),
            state=state, cpu=rng.choice([0, 0.5, 1]), memory=rng.choice([0, 64 << 20]),
            exposed_ports=PortSet(["8080/tcp"] if i % 2 else []),
            host_ports={"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(30000 + i % 30000)}]}
            if started else {},
            start_time=started,
            finish_time=started + timedelta(seconds=5)
            if started and state in (State.Completed, State.Failed) else None,
            health_check="/health" if i % 3 else "", restart_count=i % 3,
            reason="exited with status 1" if state is State.Failed else "",
            worker="127.0.0.1:5556" if state else "", created=now, generation=i % 4,
            container_id=uuid.UUID(int=rng.getrandbits(128)).hex if started else "",
        )  # fmt: skip
        texts.append(json.dumps(task.to_wire(), separators=(",", ":")))
    return texts


def best(fn: Callable[[], Any], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# -------------------------------------------------------- the pydantic candidate


def pydantic_task() -> tuple[Any, Any] | None:
    """The Task declared with pydantic v2 (aliases for Go's names, validators and
    serializers for Go's shapes), and a list adapter; None without pydantic."""
    try:
        import pydantic
        from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer
    except ImportError:
        return None

    zero = datetime(1, 1, 1, tzinfo=UTC)

    def utc(value: datetime | None) -> datetime | None:
        if value is None or value == zero:
            return None
        return value.astimezone(UTC) if value.utcoffset() else value

    def empty(value: Any) -> bool:
        return not value

    time_ = Annotated[datetime | None, AfterValidator(utc), PlainSerializer(format_time)]
    ports = Annotated[
        tuple[str, ...],
        BeforeValidator(lambda v: tuple(sorted(v)) if v else ()),
        PlainSerializer(lambda p: {k: {} for k in p} or None),
    ]
    port_map = Annotated[
        dict[str, Any], BeforeValidator(lambda v: v or {}), PlainSerializer(lambda v: v or None)
    ]
    text = Annotated[str, Field(max_length=256)]
    count = Annotated[int, Field(ge=0, le=1 << 31)]
    size = Annotated[int, Field(ge=0, le=1 << 50)]
    cores = Annotated[float, PlainSerializer(lambda c: int(c) if c.is_integer() else c)]
    image_pattern = r"^[a-z0-9][a-z0-9._/:-]*$"  # a simpler rule than Cube's, to its favour

    class PTask(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(
            extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
        )
        id: uuid.UUID = Field(default_factory=uuid.uuid4, alias="ID")
        container_id: text = Field("", alias="ContainerID")
        name: str = Field(alias="Name", min_length=1, max_length=128)
        state: State = Field(State.Pending, alias="State")
        image: text = Field(alias="Image", pattern=image_pattern)
        cpu: cores = Field(0.0, alias="Cpu", ge=0, le=1024)
        memory: size = Field(0, alias="Memory")
        disk: size = Field(0, alias="Disk")
        exposed_ports: ports = Field((), alias="ExposedPorts")
        host_ports: port_map = Field(default_factory=dict, alias="HostPorts")
        port_bindings: port_map = Field(default_factory=dict, alias="PortBindings")
        restart_policy: str = Field("", alias="RestartPolicy")
        start_time: time_ = Field(None, alias="StartTime")
        finish_time: time_ = Field(None, alias="FinishTime")
        health_check: str = Field("", alias="HealthCheck", max_length=1024)
        restart_count: count = Field(0, alias="RestartCount")
        reason: str = Field("", alias="Reason", max_length=4096, exclude_if=empty)
        worker: text = Field("", alias="Worker", exclude_if=empty)
        created: time_ = Field(None, alias="Created", exclude_if=empty)
        desired: State = Field(State.Running, alias="Desired", exclude_if=lambda s: s == 2)
        generation: count = Field(0, alias="Generation", exclude_if=empty)
        restart_at: time_ = Field(None, alias="RestartAt", exclude_if=empty)

    return PTask, pydantic.TypeAdapter(list[PTask])


# ---------------------------------------------------------------------- timing


def msgspec_ops(texts: list[str]) -> dict[str, Callable[[], Any]]:
    tasks = [decode_json(Task, t, "Task") for t in texts]
    assert [json.dumps(t.to_wire(), separators=(",", ":")) for t in tasks] == texts
    listed, cache = tasks[:LISTED], ListCache(key=lambda task: task.id)
    assert json.loads(cache.encode(listed)) == [json.loads(t) for t in texts[:LISTED]]
    return {
        "decode text": lambda: [decode_json(Task, t, "Task") for t in texts],
        "decode dicts": lambda: [Task.from_wire(json.loads(t)) for t in texts],
        "encode list": lambda: encode(listed),
        "encode list again (cached)": lambda: cache.encode(listed),
    }


def pydantic_ops(texts: list[str], declared: tuple[Any, Any]) -> dict[str, Callable[[], Any]]:
    model, adapter = declared
    tasks = [model.model_validate_json(t) for t in texts]
    for task, text in zip(tasks, texts, strict=True):
        assert task.model_dump_json() == text, text
    listed = tasks[:LISTED]
    return {
        "decode text": lambda: [model.model_validate_json(t) for t in texts],
        "decode dicts": lambda: [model.model_validate(json.loads(t)) for t in texts],
        "encode list": lambda: adapter.dump_json(listed),
    }


def interleaved(ops: dict[str, dict[str, Callable[[], Any]]]) -> dict[str, dict[str, float]]:
    """The best of ROUNDS runs of each operation, the libraries taking turns in each
    round, so that a busy moment on the machine does not land on one of them only."""
    times: dict[str, dict[str, float]] = {name: {} for name in ops}
    for _ in range(ROUNDS):
        for name, kinds in ops.items():
            for kind, fn in kinds.items():
                start = time.perf_counter()
                fn()
                took = time.perf_counter() - start
                times[name][kind] = min(took, times[name].get(kind, took))
    return times


def import_time(code: str) -> float:
    """Seconds to run ``code`` in a fresh interpreter, best of 3, minus a bare one."""

    def run(source: str) -> float:
        return best(lambda: subprocess.run([sys.executable, "-c", source], check=True), 3)

    return run(code) - run("pass")


def main() -> None:
    header(f"Wire library: decode {STORED:,} stored tasks, encode a list of {LISTED:,}")
    texts = stored_tasks(STORED)
    ops = {"msgspec (cube.task)": msgspec_ops(texts)}
    declared = pydantic_task()
    if declared is None:
        print("pydantic is not installed: its rows are skipped (pip install 'cube[dev]')")
    else:
        ops["pydantic v2"] = pydantic_ops(texts, declared)
    results = interleaved(ops)
    kinds = ["decode text", "decode dicts", "encode list", "encode list again (cached)"]
    print(f"{'':22}" + "".join(f"{k:>28}" for k in kinds))
    for name, rows in results.items():
        cells = "".join(f"{rows[k] * 1000:>25.1f} ms" if k in rows else f"{'-':>28}" for k in kinds)
        print(f"{name:22}{cells}")
    if declared is not None:
        ours, theirs = results["msgspec (cube.task)"], results["pydantic v2"]
        for kind in kinds[:3]:
            print(f"  pydantic / msgspec, {kind}: {theirs[kind] / ours[kind]:.1f}x")
    ours = import_time("import cube.task")
    print(f"import msgspec and declare Cube's wire types (import cube.task): {ours * 1000:.0f} ms")
    if declared is not None:
        theirs = import_time("import pydantic; pydantic.BaseModel")
        print(f"import pydantic alone: {theirs * 1000:.0f} ms")


if __name__ == "__main__":
    main()
