"""cube export: Kubernetes manifests checked against the official client's models, a
Nomad job checked against the shape of Nomad's job API, every Task field carried or
named in a caveat, and the `cube export` command on a file and on a live manager."""

from __future__ import annotations

import inspect
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client as k8s

from cube.cli import cli
from cube.client import ManagerClient
from cube.export import Options, export
from cube.http import Server
from cube.manager import Manager
from cube.manager.api import make_app
from cube.task import RestartPolicy, State, Task

FIXTURES = Path(__file__).parent / "fixtures"
MIB, GIB = 1 << 20, 1 << 30


def full(**changes) -> Task:
    """A task with every field set: what should run, and what one run of it looked like."""
    fields = {
        "id": uuid.UUID("21b23589-5d2d-4731-b5c9-a97e9832d021"),
        "name": "Web App",
        "image": "nginx:1.27",
        "cpu": 0.5,
        "memory": 256 * MIB,
        "disk": 1 * GIB,
        "exposed_ports": ("53/udp", "8080/tcp"),
        "port_bindings": {"8080/tcp": "18080"},
        "restart_policy": "on-failure",
        "health_check": "/health",
        "state": State.Running,
        "container_id": "c0ffee",
        "host_ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]},
        "start_time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "restart_count": 2,
        "reason": "restart 2 of 3",
        "worker": "127.0.0.1:5556",
    }
    return Task(**{**fields, **changes})


FULL = full()
RUNTIME_STATE = ("c0ffee", "49153", "2026-01-02", "restart 2 of 3", "127.0.0.1:5556")


# ------------------------------------------------------------------------- Kubernetes


def deserialize(api: k8s.ApiClient, document: dict, kind: str) -> object:
    """ApiClient.deserialize: recent clients take the body's text and content type,
    older ones a response object with the body in ``data``."""
    body = json.dumps(document)
    if "content_type" in inspect.signature(api.deserialize).parameters:
        return api.deserialize(body, kind, "application/json")
    return api.deserialize(SimpleNamespace(data=body), kind)


PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def check_model(data, kind: str, where: str = "") -> None:
    """Every key one that the model knows (its attribute_map, since deserialize ignores the
    rest) and every value of the type the model declares for it."""
    if kind.startswith("List["):
        assert isinstance(data, list), f"{where}: expected a list"
        for i, item in enumerate(data):
            check_model(item, kind[5:-1], f"{where}[{i}]")
    elif kind.startswith("Dict["):
        assert isinstance(data, dict), f"{where}: expected a map"
        value_kind = kind[5:-1].split(", ", 1)[1]
        for key, value in data.items():
            assert isinstance(key, str)
            check_model(value, value_kind, f"{where}.{key}")
    elif kind == "object":  # IntOrString: a port number or a port name
        assert isinstance(data, int | str) and not isinstance(data, bool), where
    elif kind in PRIMITIVES:
        right = isinstance(data, PRIMITIVES[kind]) and isinstance(data, bool) == (kind == "bool")
        assert right, f"{where}: {data!r} is not a {kind}"
    else:
        model = getattr(k8s, kind)
        attribute = {json_key: name for name, json_key in model.attribute_map.items()}
        assert isinstance(data, dict), f"{where}: expected a {kind} object"
        for key, value in data.items():
            assert key in attribute, f"{where}.{key} is not a field of {kind}"
            check_model(value, model.openapi_types[attribute[key]], f"{where}.{key}")


def load_into_client(document: dict) -> object:
    """The document as the client's model, which must serialise back to the same."""
    kind = {"Deployment": "V1Deployment", "Service": "V1Service"}[document["kind"]]
    check_model(document, kind, document["kind"])
    with k8s.ApiClient() as api:
        model = deserialize(api, document, kind)
        assert api.sanitize_for_serialization(model) == document
    return model


def manifests(*tasks: Task, options: Options | None = None) -> tuple[list[dict], object]:
    out = export(list(tasks), "kubernetes", options)
    documents = list(yaml.safe_load_all(out.text))
    assert documents == out.documents  # the YAML says what the dicts say
    return documents, out


def test_kubernetes_manifests_load_into_the_official_client_models():
    documents, _ = manifests(FULL, Task(name="echo", image="cube/echo", health_check="/health"))
    assert [d["kind"] for d in documents] == ["Deployment", "Service", "Deployment", "Service"]
    for document in documents:
        load_into_client(document)


def test_kubernetes_carries_every_field_that_maps_and_names_the_rest():
    (deployment, service), out = manifests(FULL)
    load_into_client(deployment)
    assert deployment["metadata"]["name"] == "web-app"
    assert deployment["metadata"]["annotations"] == {"cube/task-id": str(FULL.id)}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    (container,) = pod["containers"]
    assert container["image"] == "nginx:1.27"
    wanted = {"cpu": "500m", "memory": "256Mi", "ephemeral-storage": "1Gi"}
    assert container["resources"] == {"requests": wanted, "limits": wanted}
    assert container["ports"] == [
        {"name": "udp53", "containerPort": 53, "protocol": "UDP"},
        {"name": "tcp8080", "containerPort": 8080, "protocol": "TCP"},
    ]
    # Cube probes the first port in its sorted order over HTTP; here that is 53/udp
    assert "livenessProbe" not in container
    assert [(p["port"], p["protocol"]) for p in service["spec"]["ports"]] == [
        (53, "UDP"),
        (8080, "TCP"),
    ]
    assert {c.field for c in out.caveats} == {
        "Name",
        "RestartPolicy",
        "restarts",
        "PortBindings",
        "HealthCheck",
    }
    assert "18080" in next(c.message for c in out.caveats if c.field == "PortBindings")
    assert all(value not in out.text for value in RUNTIME_STATE)
    assert out.note in out.text


def test_kubernetes_liveness_probe_follows_the_manager():
    task = Task(name="web", image="nginx", exposed_ports=("8080/tcp",), health_check="/ok")
    options = Options(health_interval=2.5, health_timeout=3.0)
    (deployment, _), out = manifests(task, options=options)
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert probe == {
        "httpGet": {"path": "/ok", "port": "tcp8080"},
        "periodSeconds": 3,
        "timeoutSeconds": 3,
        "failureThreshold": 1,  # Cube restarts after one failed probe
    }
    assert "limit" not in deployment  # nothing invented
    assert any("3 restarts" in c.message for c in out.caveats if c.field == "restarts")


def test_process_runtime_images_are_flagged_and_get_the_port_cube_serves_them_on():
    (deployment, service), out = manifests(Task(name="echo", image="cube/echo:bad-exit"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == 7777
    assert service["spec"]["ports"][0]["port"] == 7777
    assert {"Image", "ExposedPorts"} <= {c.field for c in out.caveats}
    assert "# warning: Image: cube/echo:bad-exit is a program" in out.text


def test_a_health_check_without_a_port_is_named_not_dropped():
    (deployment,), out = manifests(Task(name="quiet", image="busybox", health_check="/h"))
    assert "livenessProbe" not in deployment["spec"]["template"]["spec"]["containers"][0]
    assert any(c.field == "HealthCheck" and "no port" in c.message for c in out.caveats)


def test_names_become_distinct_dns_labels():
    a, b = Task(name="web_1", image="x"), Task(name="WEB-1", image="x")
    documents, out = manifests(a, b, Task(name="3d", image="x"))
    names = [d["metadata"]["name"] for d in documents]
    assert names[0] == "web-1" and names[1].startswith("web-1-") and names[2] == "task-3d"
    assert len({c.task for c in out.caveats if c.field == "Name"}) == 3


def clashing_tasks() -> list[Task]:
    """Three tasks whose names clash once made DNS labels, the second fallback landing
    on the first task's own name (all three IDs start alike)."""
    ids = (f"aaaaaaaa-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))
    names = ("web-aaaaaaaa", "web", "Web")
    return [
        Task(id=uuid.UUID(i), name=n, image="x", exposed_ports=("80/tcp",))
        for i, n in zip(ids, names, strict=True)
    ]


def test_fallback_names_are_checked_for_clashes_too():
    documents, out = manifests(*clashing_tasks())
    for kind in ("Deployment", "Service"):
        named = [d["metadata"]["name"] for d in documents if d["kind"] == kind]
        assert len(named) == 3 and len(set(named)) == 3, named
    job, nomad_out = nomad(*clashing_tasks())
    groups = [g["Name"] for g in job["TaskGroups"]]
    assert len(set(groups)) == 3, groups
    for caveats in (out.caveats, nomad_out.caveats):
        said = [c.message for c in caveats if c.task == "Web" and c.field == "Name"]
        assert said and "another task's" in said[0], said


# ------------------------------------------------------------------------------ Nomad

# The shape of a Nomad job in JSON, as Nomad's HTTP API takes it (POST /v1/jobs, wrapped
# in {"Job": ...}) and `nomad job run -json` reads it. Documented at
# https://developer.hashicorp.com/nomad/api-docs/json-jobs ; the field names and types
# are those of the structs in Nomad's Go `api` package: Job (api/jobs.go); TaskGroup,
# Task, RestartPolicy, ReschedulePolicy, EphemeralDisk (api/tasks.go); Resources,
# NetworkResource, Port (api/resources.go); Service, ServiceCheck, CheckRestart
# (api/services.go). A time.Duration is an integer of nanoseconds. The docker driver's
# `config` keys are those of https://developer.hashicorp.com/nomad/docs/drivers/docker .
NS = int  # nanoseconds
ANY = object
PORT = {"Label": str, "Value": int, "To": int, "HostNetwork": str}
CHECK_RESTART = {"Limit": int, "Grace": NS, "IgnoreWarnings": bool}
SERVICE_CHECK = {
    "Name": str, "Type": str, "Path": str, "Protocol": str, "Method": str,
    "PortLabel": str, "AddressMode": str, "Interval": NS, "Timeout": NS,
    "CheckRestart": CHECK_RESTART,
}  # fmt: skip
SERVICE = {
    "Name": str, "Provider": str, "PortLabel": str, "Tags": [str], "AddressMode": str,
    "Checks": [SERVICE_CHECK], "Meta": {str: str},
}  # fmt: skip
RESOURCES = {"CPU": int, "Cores": int, "MemoryMB": int, "MemoryMaxMB": int, "DiskMB": int}
DOCKER_CONFIG = {"image": str, "ports": [str], "cpu_hard_limit": bool}
NOMAD_TASK = {
    "Name": str, "Driver": str, "Config": DOCKER_CONFIG, "Env": {str: str},
    "Resources": RESOURCES, "Services": [SERVICE], "Meta": {str: str},
}  # fmt: skip
RESTART = {"Attempts": int, "Interval": NS, "Delay": NS, "Mode": str}
RESCHEDULE = {
    "Attempts": int, "Interval": NS, "Delay": NS, "DelayFunction": str, "MaxDelay": NS,
    "Unlimited": bool,
}  # fmt: skip
NETWORK = {"Mode": str, "DynamicPorts": [PORT], "ReservedPorts": [PORT]}
TASK_GROUP = {
    "Name": str, "Count": int, "Tasks": [NOMAD_TASK], "Networks": [NETWORK],
    "Services": [SERVICE], "RestartPolicy": RESTART, "ReschedulePolicy": RESCHEDULE,
    "EphemeralDisk": {"Sticky": bool, "Migrate": bool, "SizeMB": int}, "Meta": {str: str},
}  # fmt: skip
JOB = {
    "ID": str, "Name": str, "Type": str, "Region": str, "Namespace": str, "Priority": int,
    "Datacenters": [str], "TaskGroups": [TASK_GROUP], "Meta": {str: str},
}  # fmt: skip


def check_shape(data, shape, where: str = "Job") -> None:
    """``data`` has only fields of ``shape``, each of the type it says."""
    if isinstance(shape, list):
        assert isinstance(data, list), f"{where}: expected a list"
        for i, item in enumerate(data):
            check_shape(item, shape[0], f"{where}[{i}]")
    elif isinstance(shape, dict) and list(shape) == [str]:  # a map
        assert isinstance(data, dict), f"{where}: expected a map"
        for key, value in data.items():
            assert isinstance(key, str)
            check_shape(value, shape[str], f"{where}.{key}")
    elif isinstance(shape, dict):
        assert isinstance(data, dict), f"{where}: expected an object"
        for key, value in data.items():
            assert key in shape, f"{where}.{key} is not a field of Nomad's {where}"
            check_shape(value, shape[key], f"{where}.{key}")
    elif shape is not ANY:
        assert isinstance(data, shape) and (shape is bool or not isinstance(data, bool)), (
            f"{where}: {data!r} is not a {shape.__name__}"
        )


def nomad(*tasks: Task, options: Options | None = None):
    out = export(list(tasks), "nomad", options)
    (document,) = out.documents
    assert json.loads(out.text) == document
    assert list(document) == ["Job"]
    check_shape(document["Job"], JOB)
    return document["Job"], out


def test_nomad_job_has_the_shape_of_nomads_job_api():
    job, _ = nomad(FULL, Task(name="echo", image="cube/echo", health_check="/health"))
    assert job["Type"] == "service" and job["ID"] == "cube"
    assert [g["Name"] for g in job["TaskGroups"]] == ["web-app", "echo"]


def test_nomad_carries_every_field_that_maps_and_names_the_rest():
    task = full(exposed_ports=("8080/tcp", "9090/tcp"))
    job, out = nomad(task, options=Options(mhz_per_core=2000))
    assert job["ID"] == job["Name"] == "web-app"  # one task names the job
    (group,) = job["TaskGroups"]
    assert group["Meta"] == {"cube_task_id": str(FULL.id)}
    assert group["EphemeralDisk"] == {"SizeMB": 1024}
    assert group["Networks"] == [
        {
            "DynamicPorts": [{"Label": "tcp9090", "To": 9090}],
            "ReservedPorts": [{"Label": "tcp8080", "Value": 18080, "To": 8080}],
        }
    ]
    (nomad_task,) = group["Tasks"]
    assert nomad_task["Driver"] == "docker"
    assert nomad_task["Config"] == {
        "image": "nginx:1.27",
        "ports": ["tcp8080", "tcp9090"],
        "cpu_hard_limit": True,
    }
    assert nomad_task["Resources"] == {"CPU": 1000, "MemoryMB": 256}
    (check,) = nomad_task["Services"][0]["Checks"]
    assert (check["Type"], check["Path"], check["PortLabel"]) == ("http", "/health", "tcp8080")
    assert check["Interval"] == 5 * 10**9 and check["Timeout"] == 3 * 10**9
    assert check["CheckRestart"]["Limit"] == 1
    assert {c.field for c in out.caveats} == {"Name", "RestartPolicy", "restarts"}
    assert all(value not in out.text for value in RUNTIME_STATE)


def test_nomad_restart_block_mirrors_cubes_restart_policy():
    job, out = nomad(Task(name="web", image="nginx"), options=Options(RestartPolicy(limit=5)))
    group = job["TaskGroups"][0]
    assert group["RestartPolicy"] == {
        "Attempts": 5,
        "Interval": 24 * 3600 * 10**9,
        "Delay": 10**9,
        "Mode": "fail",
    }
    assert group["ReschedulePolicy"] == {"Attempts": 0, "Interval": 0, "Unlimited": False}
    assert {c.field for c in out.caveats} == {"restarts", "Cpu", "Memory"}  # Nomad defaults


def test_sizes_round_up_to_whole_mebibytes_and_say_so():
    job, out = nomad(Task(name="odd", image="x", memory=100 * MIB + 1, disk=MIB - 1))
    group = job["TaskGroups"][0]
    assert group["Tasks"][0]["Resources"]["MemoryMB"] == 101
    assert group["EphemeralDisk"]["SizeMB"] == 1
    assert {"Memory", "Disk"} <= {c.field for c in out.caveats}


def test_unknown_target_and_no_tasks_are_errors():
    with pytest.raises(ValueError, match="unknown target"):
        export([FULL], "swarm")
    with pytest.raises(ValueError, match="no tasks"):
        export([], "nomad")


# -------------------------------------------------------------------------------- CLI


def test_cli_exports_a_task_file_and_warns_on_stderr(tmp_path):
    result = CliRunner().invoke(
        cli, ["export", "--to", "k8s", "-f", str(FIXTURES / "book/task1.json")]
    )
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in documents] == ["Deployment", "Service"]
    assert documents[0]["metadata"]["name"] == "test-chapter-9-1"
    assert "warning: test-chapter-9.1: PortBindings: 7777/tcp" in result.stderr
    assert "note: Runtime state" in result.stderr

    listed = tmp_path / "tasks.json"
    listed.write_text(json.dumps([{"Name": "a", "Image": "x"}, {"Name": "b", "Image": "y"}]))
    written = tmp_path / "job.json"
    result = CliRunner().invoke(
        cli, ["export", "--to", "nomad", "-f", str(listed), "-o", str(written), "--job", "demo"]
    )
    assert result.exit_code == 0, result.output
    job = json.loads(written.read_text())["Job"]
    assert job["ID"] == "demo" and len(job["TaskGroups"]) == 2
    assert result.stdout == ""


def test_cli_needs_exactly_one_source():
    result = CliRunner().invoke(cli, ["export", "--to", "nomad"])
    assert result.exit_code == 2 and "one of" in result.output
    result = CliRunner().invoke(cli, ["export", "--to", "nomad", "--all", "abc"])
    assert result.exit_code == 2


@pytest.fixture
def live_manager():
    """A manager over HTTP whose only worker never answers: tasks stay Pending."""
    manager = Manager(["127.0.0.1:9"], "roundrobin")
    server = Server(make_app(manager)).start()
    yield server.url.removeprefix("http://")
    server.stop()
    manager.close()


def test_cli_exports_one_task_or_all_tasks_of_a_running_cluster(live_manager):
    address = live_manager

    with ManagerClient(address) as client:
        web = client.submit({"Name": "web", "Image": "nginx", "ExposedPorts": {"80/tcp": {}}})
        db = client.submit({"Name": "db", "Image": "postgres:16", "Memory": 512 * MIB})
        gone = client.submit({"Name": "gone", "Image": "busybox"})
        client.stop(gone.id)
    runner = CliRunner()
    one = runner.invoke(cli, ["export", "--to", "nomad", str(web.id)[:8], "-m", address])
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["Job"]["ID"] == "web"

    every = runner.invoke(cli, ["export", "--to", "kubernetes", "--all", "-m", address])
    assert every.exit_code == 0, every.output
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(every.stdout)]
    assert names == ["web", "web", "db"]  # web's Deployment and Service, db's Deployment
    assert "left out 1 stopped task" in every.stderr

    as_json = runner.invoke(cli, ["export", "--to", "k8s", str(db.id), "-m", address, "--json"])
    body = json.loads(as_json.stdout)
    assert body["Target"] == "kubernetes" and body["Documents"][0]["kind"] == "Deployment"
    assert {c["field"] for c in body["Caveats"]} == {"restarts"}


def test_cli_says_when_the_manager_is_not_there():
    result = CliRunner().invoke(cli, ["export", "--to", "nomad", "--all", "-m", "127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach the manager" in result.output
