"""The task model: states, transitions, and the Go Cube's wire format."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cube.task import (
    TRANSITIONS,
    ZERO_TIME,
    State,
    Task,
    TaskEvent,
    TransitionError,
    ValidationError,
    can_transition,
    check_transition,
    error_body,
    format_time,
    parse_submission,
    parse_time,
)

FIXTURES = Path(__file__).parent / "fixtures"

# --------------------------------------------------------------------- state machine

ALLOWED = {
    (State.Pending, State.Scheduled),
    (State.Pending, State.Completed),
    (State.Pending, State.Failed),
    (State.Scheduled, State.Scheduled),
    (State.Scheduled, State.Running),
    (State.Scheduled, State.Completed),
    (State.Scheduled, State.Failed),
    (State.Running, State.Scheduled),
    (State.Running, State.Running),
    (State.Running, State.Completed),
    (State.Running, State.Failed),
    (State.Failed, State.Scheduled),
    (State.Failed, State.Completed),
}


def test_state_values_are_the_books():
    assert [(s.name, int(s)) for s in State] == [
        ("Pending", 0),
        ("Scheduled", 1),
        ("Running", 2),
        ("Completed", 3),
        ("Failed", 4),
    ]
    assert str(State.Running) == "Running"


@pytest.mark.parametrize("src", list(State))
@pytest.mark.parametrize("dst", list(State))
def test_every_pair_of_states(src, dst):
    expected = (src, dst) in ALLOWED
    assert can_transition(src, dst) is expected
    if expected:
        check_transition(src, dst)
    else:
        with pytest.raises(TransitionError) as info:
            check_transition(src, dst)
        assert src.name in str(info.value) and dst.name in str(info.value)
        assert (info.value.src, info.value.dst) == (src, dst)


def test_completed_is_terminal_and_nothing_returns_to_pending():
    assert TRANSITIONS[State.Completed] == frozenset()
    assert all(State.Pending not in targets for targets in TRANSITIONS.values())
    with pytest.raises(TransitionError, match="Completed is final"):
        check_transition(State.Completed, State.Running)


# ------------------------------------------------------------------------ round trips


def load(name):
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize(
    "name",
    [
        "gocube/manager_tasks_running.json",
        "gocube/worker_tasks_running.json",
    ],
)
def test_go_task_lists_round_trip_exactly(name):
    tasks = load(name)
    assert [Task.from_wire(t).to_wire() for t in tasks] == tasks


def test_go_worker_reply_round_trips_exactly():
    task = load("gocube/worker_post_tasks_response.json")
    assert Task.from_wire(task).to_wire() == task


def test_go_manager_event_round_trips_exactly():
    event = load("gocube/manager_to_worker_post_tasks.json")
    parsed = TaskEvent.from_wire(event)
    assert parsed.to_wire() == event
    assert parsed.state is State.Running
    assert parsed.task.state is State.Scheduled
    assert parsed.task.host_ports == {} and parsed.task.start_time is None
    assert parsed.task.exposed_ports == ("8080/tcp",)


def test_key_order_matches_go():
    task = load("gocube/worker_post_tasks_response.json")
    assert list(Task.from_wire(task).to_wire()) == list(task)


def test_our_extra_keys_appear_only_when_set():
    task = Task("a", "cube/echo")
    assert "Reason" not in task.to_wire() and "Worker" not in task.to_wire()
    task.reason, task.worker = "no node has 64 GiB free", "127.0.0.1:5556"
    wire = task.to_wire()
    assert (wire["Reason"], wire["Worker"]) == (task.reason, task.worker)
    assert Task.from_wire(wire) == task


@pytest.mark.parametrize("name", ["book/task.json", "book/task1.json", "book/task2.json"])
def test_book_task_files_parse(name):
    event = parse_submission(load(name))
    raw = load(name)
    assert str(event.id) == raw["ID"]
    assert str(event.task.id) == raw["Task"]["ID"]
    assert event.state is State.Running and event.task.state is State.Scheduled
    assert event.timestamp is not None  # a missing timestamp becomes "now"


def test_error_body_has_the_books_shape():
    body = {"HTTPStatusCode": 400, "Message": "Task.Image: an image is required"}
    assert error_body(400, "Task.Image: an image is required") == body
    assert json.loads(json.dumps(error_body(404, "x"))) == {"HTTPStatusCode": 404, "Message": "x"}


def test_host_port_is_the_first_in_port_order():
    task = Task.from_wire(load("gocube/worker_tasks_running.json")[0])
    assert task.host_port() == 32768
    task.host_ports = {
        "9000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40001"}],
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": ""}, {"HostIp": "::", "HostPort": "40002"}],
    }
    assert task.host_port() == 40002
    assert Task("a", "b").host_port() is None


# ------------------------------------------------------------------------------ times


def test_times():
    assert parse_time(ZERO_TIME, "t") is None
    assert format_time(None) == ZERO_TIME
    moment = parse_time("2024-01-28T10:11:12.123456789+02:00", "t")
    assert moment == datetime(2024, 1, 28, 8, 11, 12, 123457, tzinfo=UTC)  # rounded
    assert format_time(moment) == "2024-01-28T08:11:12.123457Z"
    assert format_time(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00Z"
    assert format_time(datetime(518, 11, 11, 20, 44, 4, tzinfo=UTC)) == "0518-11-11T20:44:04Z"


# ------------------------------------------------------------------------- bare specs


def test_bare_spec_gets_generated_ids():
    one = parse_submission({"Name": "web", "Image": "cube/echo"})
    two = parse_submission({"Name": "web", "Image": "cube/echo"})
    assert one.state is State.Running and one.task.state is State.Pending
    assert one.task.name == "web" and one.task.image == "cube/echo"
    assert len({one.id, one.task.id, two.id, two.task.id}) == 4
    assert one.timestamp is not None


def test_event_without_ids_gets_fresh_ones_instead_of_colliding():
    raw = {"State": 2, "Task": {"Name": "a", "Image": "cube/echo"}}
    assert parse_submission(raw).task.id != parse_submission(raw).task.id


def test_keys_match_case_insensitively_like_go():
    event = parse_submission({"task": {"name": "web", "image": "cube/echo", "cpu": 0.5}})
    assert event.task.name == "web" and event.task.cpu == 0.5


# ------------------------------------------------------------------------ bad input


def spec(**fields):
    return {"Name": "web", "Image": "cube/echo", **fields}


BAD = [
    (spec(Imagee="x"), "Task.Imagee", "unknown field"),
    ({"ID": "nope", "Task": spec()}, "TaskEvent.ID", "is not a UUID"),
    (spec(ID="1234"), "Task.ID", "is not a UUID"),
    (spec(ID=str(uuid.UUID(int=0))), "Task.ID", "nil UUID"),
    (spec(ID=7), "Task.ID", "expected a UUID string"),
    (spec(State=9), "Task.State", "unknown state 9"),
    ({"State": 5, "Task": spec()}, "TaskEvent.State", "unknown state 5"),
    (spec(State="Running"), "Task.State", "expected a state number"),
    (spec(State=True), "Task.State", "expected a state number"),
    (spec(Memory=-1), "Task.Memory", "must not be negative"),
    (spec(Disk=-5), "Task.Disk", "must not be negative"),
    (spec(Cpu=-0.5), "Task.Cpu", "a number from 0 to 1024"),
    (spec(Cpu=float("inf")), "Task.Cpu", "a number from 0 to 1024"),
    (spec(Memory=1 << 60), "Task.Memory", "must be at most"),
    (spec(RestartCount=1 << 40), "Task.RestartCount", "must be at most"),
    (spec(Memory="1g"), "Task.Memory", "expected an integer"),
    (spec(Memory=1.5), "Task.Memory", "expected an integer"),
    (spec(RestartCount=False), "Task.RestartCount", "expected an integer"),
    (spec(Image="Not An Image!"), "Task.Image", "is not an image reference"),
    (spec(Image="UPPER/case"), "Task.Image", "is not an image reference"),
    (spec(Image=""), "Task.Image", "an image is required"),
    ({"Name": "web"}, "Task.Image", "an image is required"),
    ({"Image": "cube/echo"}, "Task.Name", "a task needs a name"),
    (spec(Name="a" * 500), "Task.Name", "longer than"),
    (spec(ExposedPorts={"http": {}}), "Task.ExposedPorts['http']", "is not a port"),
    (spec(ExposedPorts={"99999/tcp": {}}), "Task.ExposedPorts['99999/tcp']", "is not a port"),
    (spec(ExposedPorts=["80/tcp"]), "Task.ExposedPorts", "expected an object"),
    (spec(PortBindings={"80/tcp": "eighty"}), "Task.PortBindings['80/tcp']", "host port"),
    (spec(HostPorts={"80/tcp": "x"}), "Task.HostPorts['80/tcp']", "list of bindings"),
    (spec(RestartPolicy="sometimes"), "Task.RestartPolicy", "is not one of"),
    (spec(Image="cube/echo\n"), "Task.Image", "is not an image reference"),
    (spec(Image="cube/echo:\u00e4"), "Task.Image", "is not an image reference"),
    (spec(ExposedPorts={"\u0668\u0660": {}}), "Task.ExposedPorts['\u0668\u0660']", "is not a port"),
    (spec(ExposedPorts={"80\n": {}}), "Task.ExposedPorts['80\\n']", "is not a port"),
    (spec(PortBindings={"80": "\u00b2"}), "Task.PortBindings['80']", "host port"),
    (spec(StartTime="2024-01-01T00:00:00Z\n"), "Task.StartTime", "not an RFC 3339 time"),
    (spec(HealthCheck="health"), "Task.HealthCheck", "starting with '/'"),
    (spec(StartTime=""), "Task.StartTime", "not an RFC 3339 time"),
    (spec(StartTime="2024-13-45T00:00:00Z"), "Task.StartTime", "not an RFC 3339 time"),
    (spec(StartTime="0001-01-01T00:30:00+01:00"), "Task.StartTime", "not a valid time"),
    (spec(StartTime="9999-12-31T23:59:59-01:00"), "Task.StartTime", "not a valid time"),
    ({"ID": str(uuid.uuid4()), "Timestamp": ZERO_TIME}, "TaskEvent.Task", "needs a Task"),
    ([1, 2], "Task", "expected a JSON object"),
    ({"Task": "web"}, "TaskEvent.Task", "expected a JSON object"),
]


@pytest.mark.parametrize(("data", "field", "why"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_input_names_the_field_and_why(data, field, why):
    with pytest.raises(ValidationError) as info:
        parse_submission(data)
    assert info.value.field == field
    assert why in str(info.value)
    assert str(info.value).startswith(field)


@pytest.mark.parametrize(
    "image",
    ["cube/echo", "nginx", "nginx:1.27-alpine", "localhost:5000/team/app:v1", "a.b/c_d__e"],
)
def test_good_image_references(image):
    assert parse_submission(spec(Image=image)).task.image == image


def test_image_allowlist(monkeypatch):
    monkeypatch.setenv("CUBE_ALLOWED_IMAGES", "cube/*, nginx:1.*")
    assert parse_submission(spec(Image="cube/echo")).task.image == "cube/echo"
    assert parse_submission(spec(Image="nginx:1.27")).task.image == "nginx:1.27"
    with pytest.raises(ValidationError, match="'redis' is not allowed here"):
        parse_submission(spec(Image="redis"))


def test_a_tighter_allowlist_keeps_stored_tasks_readable_and_stoppable(monkeypatch):
    stored = Task("cache", "redis", state=State.Running).to_wire()
    monkeypatch.setenv("CUBE_ALLOWED_IMAGES", "cube/*")
    assert Task.from_wire(stored).image == "redis"
    stop = parse_submission({"State": 3, "Task": stored})
    assert (stop.state, stop.task.image) == (State.Completed, "redis")
    with pytest.raises(ValidationError, match="not allowed here"):
        parse_submission({"State": 2, "Task": stored})


def test_bare_port_means_tcp():
    assert parse_submission(spec(ExposedPorts={"80": {}})).task.exposed_ports == ("80/tcp",)


# ---------------------------------------------------------------- property: round trip

names = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_characters="\x7f"),
    min_size=1,
    max_size=40,
).filter(str.strip)
ports = st.builds(
    lambda n, p: f"{n}/{p}", st.integers(1, 65535), st.sampled_from(["tcp", "udp", "sctp"])
)
times = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1, 1, 2),  # clear of Go's zero instant, which reads as unset
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC),
    ),
)
tasks = st.builds(
    Task,
    name=names,
    image=st.sampled_from(["cube/echo", "nginx:1.27", "registry.local:5000/a/b:c"]),
    id=st.uuids().filter(lambda u: u.int != 0),
    state=st.sampled_from(list(State)),
    container_id=st.text(max_size=64),
    cpu=st.floats(0, 64, allow_nan=False),
    memory=st.integers(0, 2**40),
    disk=st.integers(0, 2**40),
    exposed_ports=st.lists(ports, max_size=3, unique=True).map(lambda p: tuple(sorted(p))),
    host_ports=st.dictionaries(
        ports,
        st.lists(
            st.fixed_dictionaries(
                {
                    "HostIp": st.sampled_from(["0.0.0.0", "::", "127.0.0.1"]),
                    "HostPort": st.integers(1, 65535).map(str),
                }
            ),
            min_size=1,
            max_size=2,
        ),
        max_size=2,
    ),
    port_bindings=st.dictionaries(ports, st.integers(1, 65535).map(str), max_size=2),
    restart_policy=st.sampled_from(["", "always", "on-failure", "unless-stopped", "no"]),
    start_time=times,
    finish_time=times,
    health_check=st.sampled_from(["", "/", "/health", "/healthfail"]),
    restart_count=st.integers(0, 1000),
    reason=st.text(max_size=50),
    worker=st.sampled_from(["", "127.0.0.1:5556"]),
    created=times,
)


@given(tasks)
def test_task_wire_round_trip(task):
    wire = json.loads(json.dumps(task.to_wire()))
    assert Task.from_wire(wire) == task
    assert Task.from_wire(wire).to_wire() == wire


@given(tasks, st.sampled_from(list(State)), times)
def test_event_wire_round_trip(task, state, timestamp):
    event = TaskEvent(task=task, state=state, timestamp=timestamp)
    wire = json.loads(json.dumps(event.to_wire()))
    assert TaskEvent.from_wire(wire) == event
