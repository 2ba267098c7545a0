"""OpenAPI 3.1 documents for the worker and manager APIs, served at ``/openapi.json``.

The documents are built from plain dicts so that they can say exactly what the code in
:mod:`cube.task` and :mod:`cube.http` enforces: the same bounds, patterns and enums, the
same required fields, and every status code a route can answer. ``tests/test_openapi.py``
checks that each document lists exactly the routes its Bottle app has, and
``tests/test_fuzz.py`` fuzzes running servers against them with schemathesis, so a
document that drifts from the code fails the tests.

Request bodies are described with their canonical (PascalCase) keys and
``additionalProperties: false``: the server rejects unknown keys, and it matches keys
case-insensitively as Go's JSON decoder does, so ``name`` is read as ``Name``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import bottle

import cube
from cube.http import MAX_BODY, MAX_DEPTH
from cube.task import (
    MAX_BYTES,
    MAX_COUNT,
    MAX_CPU,
    MAX_GENERATION,
    RESTART_POLICIES,
    ZERO_TIME,
    State,
)

Schema = dict[str, Any]

JSON = "application/json"
NIL_UUID = "00000000-0000-0000-0000-000000000000"
MAX_TAIL = 100_000

# Regular expressions mirror cube.task's, written with ASCII classes ([0-9], not \d) so
# that a validator and a generator agree on them whatever their regex dialect.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+(?::[0-9]+)?|[a-zA-Z0-9-]+:[0-9]+|localhost)"
IMAGE_PATTERN = (
    rf"^(?:{_REGISTRY}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_PORT_NUMBER = (
    r"(?:0{0,4}[1-9]|0{0,3}[1-9][0-9]|0{0,2}[1-9][0-9]{2}|0?[1-9][0-9]{3}"
    r"|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
PORT_PATTERN = rf"^{_PORT_NUMBER}(?:/(?:tcp|udp|sctp))?$"
HOST_PORT_PATTERN = (
    r"^(?:0*(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
    r"|6553[0-5]))?$"
)
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
HEALTH_CHECK_PATTERN = r"^(?:/[\s\S]*)?$"
TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
# The grammar's name, for tools: a generator can produce image references far faster from
# it than from IMAGE_PATTERN, which still decides what is valid.
IMAGE_FORMAT = "image-reference"


# ---------------------------------------------------------------------- building blocks


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(max_length: int = 256, **extra: Any) -> Schema:
    return {"type": "string", "maxLength": max_length, **extra}


def _integer(maximum: int, **extra: Any) -> Schema:
    return {"type": "integer", "minimum": 0, "maximum": maximum, **extra}


def _nullable(schema: Schema) -> Schema:
    nullable = dict(schema)
    nullable["type"] = [schema["type"], "null"]
    return nullable


UUID: Schema = {
    "type": "string",
    "format": "uuid",
    "not": {"const": NIL_UUID},
    "description": "A UUID; the nil UUID is refused.",
}
TIME: Schema = {
    "type": "string",
    "format": "date-time",
    "pattern": TIME_PATTERN,
    "description": f"RFC 3339, in UTC in answers; {ZERO_TIME} means not set.",
}
STATE: Schema = {
    "type": "integer",
    "enum": [int(s) for s in State],
    "description": ", ".join(f"{s.value} {s.name}" for s in State),
}
PORT_KEYS: Schema = {"pattern": PORT_PATTERN}
HOST_PORT: Schema = _string(pattern=HOST_PORT_PATTERN, description="A host port, or '' for any.")
BINDING: Schema = {
    "type": "object",
    "properties": {"HostIp": _string(), "HostPort": HOST_PORT},
    "additionalProperties": False,
}


def _task_properties(answer: bool) -> dict[str, Schema]:
    """A task's fields. In answers ports are canonical (``80/tcp``), bindings are never
    null, and ``Reason`` is whatever the worker or manager wrote."""
    binding = BINDING if answer else _nullable(BINDING)
    return {
        "ID": UUID,
        "ContainerID": _string(),
        "Name": _string(128, minLength=1, pattern=NAME_PATTERN),
        "State": STATE,
        "Image": _string(
            format=IMAGE_FORMAT,
            pattern=IMAGE_PATTERN,
            description="A Docker image reference (distribution/reference's grammar); "
            "CUBE_ALLOWED_IMAGES may narrow it.",
        ),
        "Cpu": {"type": "number", "minimum": 0, "maximum": MAX_CPU, "description": "Cores."},
        "Memory": _integer(MAX_BYTES, description="Bytes."),
        "Disk": _integer(MAX_BYTES, description="Bytes."),
        "ExposedPorts": {
            "type": ["object", "null"],
            "propertyNames": PORT_KEYS,
            "additionalProperties": {
                "type": "object" if answer else ["object", "null"],
                "maxProperties": 0,
            },
            "description": 'Docker\'s port set: {"80/tcp": {}}; a bare "80" means TCP.',
        },
        "HostPorts": {
            "type": ["object", "null"],
            "propertyNames": PORT_KEYS,
            "additionalProperties": {
                "type": "array" if answer else ["array", "null"],
                "items": binding,
            },
            "description": "Docker's port map: where each port is published.",
        },
        "PortBindings": {
            "type": ["object", "null"],
            "propertyNames": PORT_KEYS,
            "additionalProperties": HOST_PORT,
            "description": "Container port -> host port to publish it on.",
        },
        "RestartPolicy": {"type": "string", "enum": list(RESTART_POLICIES)},
        "StartTime": TIME,
        "FinishTime": TIME,
        "HealthCheck": _string(1024, pattern=HEALTH_CHECK_PATTERN),
        "RestartCount": _integer(MAX_COUNT),
        "Reason": {"type": "string"} if answer else _string(4096),
        "Worker": _string(),
        "Created": TIME,
        "Desired": {
            "enum": [int(State.Running), int(State.Completed)],
            "description": "What is wanted of the task (left out when Running).",
        },
        "Generation": _integer(MAX_GENERATION),
        "RestartAt": TIME,
    }


STATS_KEYS = [
    "MemStats", "DiskStats", "CpuStats", "LoadStats", "TaskCount", "CpuPercent", "Cores",
]  # fmt: skip
NODE_KEYS = [
    "Name", "Ip", "Api", "Memory", "MemoryAllocated", "Disk", "DiskAllocated", "Stats", "Role",
    "TaskCount", "State", "Cores", "CpuAllocated", "CpuPercent", "MemoryUsed", "DiskUsed",
    "LastSeen", "Reason", "Runtime", "Images", "Pulls",
]  # fmt: skip
ANSWER_KEYS = [
    "ID", "ContainerID", "Name", "State", "Image", "Cpu", "Memory", "Disk", "ExposedPorts",
    "HostPorts", "PortBindings", "RestartPolicy", "StartTime", "FinishTime", "HealthCheck",
    "RestartCount",
]  # fmt: skip


def _schemas() -> dict[str, Schema]:
    """The component schemas both documents share."""
    task = _task_properties(answer=True)
    return {
        "Error": {
            "type": "object",
            "required": ["HTTPStatusCode", "Message"],
            "properties": {
                "HTTPStatusCode": {"type": "integer", "minimum": 400, "maximum": 599},
                "Message": {"type": "string"},
            },
            "additionalProperties": False,
            "description": "Every error, including unknown routes and methods.",
        },
        "TaskSpec": {
            "type": "object",
            "required": ["Name", "Image"],
            "properties": _task_properties(answer=False),
            "additionalProperties": False,
            "description": "A bare task to run. Missing fields take their zero values; "
            "a missing ID is generated. Keys are matched case-insensitively.",
            "examples": [{"Name": "web", "Image": "cube/echo", "HealthCheck": "/health"}],
        },
        "TaskEventSpec": {
            "type": "object",
            "required": ["Task"],
            "properties": {
                "ID": UUID,
                "State": {
                    "type": "integer",
                    "enum": [int(State.Scheduled), int(State.Running), int(State.Completed)],
                    "description": "The desired state: 1 or 2 run the task, 3 stops it.",
                },
                "Timestamp": TIME,
                "Task": _ref("TaskSpec"),
            },
            "additionalProperties": False,
            "description": "A request to put a task into a state (the Go Cube's shape).",
        },
        "Task": {
            "type": "object",
            "required": ANSWER_KEYS,
            "properties": task,
            "additionalProperties": False,
        },
        "TaskEvent": {
            "type": "object",
            "required": ["ID", "State", "Timestamp", "Task"],
            "properties": {"ID": UUID, "State": STATE, "Timestamp": TIME, "Task": _ref("Task")},
            "additionalProperties": False,
        },
        "Logs": {
            "type": "object",
            "required": ["ID", "Logs"],
            "properties": {"ID": UUID, "Logs": {"type": "string"}},
            "additionalProperties": False,
        },
    }


def _worker_schemas() -> dict[str, Schema]:
    counters = {"type": "object", "additionalProperties": {"type": "integer"}}
    return {
        "WorkerHealth": {
            "type": "object",
            "required": ["Status", "Name", "Runtime", "Images", "Pulls"],
            "properties": {
                "Status": {"const": "ok"},
                "Name": {"type": "string"},
                "Runtime": {"enum": ["docker", "process"]},
                "Images": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The images it has (Docker), or the programs it runs "
                    "(process runtime: cube/echo, cube/busybox, with any tag).",
                },
                "Pulls": {"type": "boolean", "description": "Whether it can pull images."},
            },
            "additionalProperties": False,
        },
        "RuntimeStatus": {
            "type": "object",
            "required": ["ContainerID", "Running", "Status", "ExitCode", "Reason", "HostPorts"],
            "properties": {
                "ContainerID": {"type": "string"},
                "Running": {"type": "boolean"},
                "Status": {
                    "type": "string",
                    "description": "The runtime's word: running, exited, missing, or "
                    "unknown when the runtime cannot be asked (Reason says why).",
                },
                "ExitCode": {"type": ["integer", "null"]},
                "Reason": {"type": "string"},
                "HostPorts": {
                    "type": ["object", "null"],
                    "additionalProperties": {"type": "array", "items": BINDING},
                },
            },
            "additionalProperties": False,
        },
        "WorkerTask": {
            "type": "object",
            "required": [*ANSWER_KEYS, "Runtime"],
            "properties": {
                **_task_properties(answer=True),
                "Runtime": {"oneOf": [_ref("RuntimeStatus"), {"type": "null"}]},
            },
            "additionalProperties": False,
            "description": "A task, with what its runtime says about it now (null before "
            "it has a container).",
        },
        "Stats": {
            "type": "object",
            "required": STATS_KEYS,
            "properties": {
                "MemStats": counters,
                "DiskStats": counters,
                "CpuStats": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}},
                    "additionalProperties": {"type": "integer"},
                },
                "LoadStats": {"type": "object", "additionalProperties": {"type": "number"}},
                "TaskCount": {"type": "integer", "minimum": 0},
                "CpuPercent": {"type": "number", "minimum": 0, "maximum": 100},
                "Cores": {"type": "integer", "minimum": 1},
            },
            "additionalProperties": False,
            "description": "goprocinfo's names and units (memory in kB, disk in bytes, CPU "
            "in jiffies), so a Go manager can read them; CpuPercent and Cores are ours.",
        },
    }


def _manager_schemas() -> dict[str, Schema]:
    number = {"type": "number", "minimum": 0}
    count = {"type": "integer", "minimum": 0}
    return {
        "ManagerHealth": {
            "type": "object",
            "required": ["Status", "Scheduler", "Workers"],
            "properties": {
                "Status": {"const": "ok"},
                "Scheduler": {"type": "string"},
                "Workers": count,
            },
            "additionalProperties": False,
        },
        "Node": {
            "type": "object",
            "required": NODE_KEYS,
            "properties": {
                "Name": {"type": "string"},
                "Ip": {"type": "string"},
                "Api": {"type": "string"},
                "Memory": {**count, "description": "kB"},
                "MemoryAllocated": {**count, "description": "kB"},
                "Disk": {**count, "description": "bytes"},
                "DiskAllocated": {**count, "description": "bytes"},
                "Stats": {
                    "type": ["object", "null"],
                    "description": "The worker's last /stats answer (a Go worker's has "
                    "fewer fields); null before it first answered.",
                },
                "Role": {"const": "worker"},
                "TaskCount": count,
                "State": {"enum": ["up", "down", "unknown"]},
                "Cores": number,
                "CpuAllocated": number,
                "CpuPercent": {**number, "maximum": 100},
                "MemoryUsed": {**count, "description": "kB"},
                "DiskUsed": {**count, "description": "bytes"},
                "Runtime": {"enum": ["docker", "process", ""]},
                "Images": {"type": "array", "items": {"type": "string"}},
                "Pulls": {"type": "boolean"},
                "LastSeen": TIME,
                "Reason": {"type": "string", "description": "Why it is down."},
            },
            "additionalProperties": False,
        },
    }


# ---------------------------------------------------------------------------- operations


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(description, _ref("Error"))


ERRORS = {
    400: "Invalid input; the message names the field and says why.",
    401: "A token is required: send 'Authorization: Bearer <token>'.",
    404: "No such task.",
    409: "The task's state does not allow this (see the state machine).",
    413: f"The body is over {MAX_BODY} bytes.",
    415: "The body is not sent as JSON.",
    502: "The task's worker could not be asked.",
}


def _op(
    summary: str,
    ok: tuple[int, Schema],
    errors: tuple[int, ...] = (),
    *,
    parameters: list[Schema] | None = None,
    body: bool = False,
    open_route: bool = False,
) -> Schema:
    """One operation. Every route but the open ones may answer 401 when the server was
    started with a token."""
    status, answer = ok
    codes = sorted({*errors, *(() if open_route else (401,))})
    operation: Schema = {
        "summary": summary,
        "operationId": _operation_id(summary),
        "responses": {str(status): answer} | {str(c): _error(ERRORS[c]) for c in codes},
    }
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {
            "required": True,
            "description": "A bare task, or a task event. application/x-www-form-urlencoded "
            f"is read as JSON too (as `curl -d` sends it); JSON nested deeper than "
            f"{MAX_DEPTH} levels is refused.",
            "content": {
                JSON: {"schema": {"oneOf": [_ref("TaskSpec"), _ref("TaskEventSpec")]}},
            },
        }
    if open_route:
        operation["security"] = []
    return operation


def _operation_id(summary: str) -> str:
    words = summary.replace("'", "").split()
    return words[0].lower() + "".join(w.capitalize() for w in words[1:])


TASK_ID: Schema = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "description": "The task's ID (the nil UUID and non-UUIDs answer 400).",
}


def _query_count(name: str, default: int, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_TAIL, "default": default},
        "description": description,
    }


TAIL = _query_count("tail", 200, "How many of the last lines to return.")
GENERATION: Schema = {
    "name": "generation",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_GENERATION},
    "description": "The order's generation: a stop older than the order the worker "
    "follows is refused (409), so a deposed manager cannot stop a newer copy.",
}


def _task_routes(
    task: Schema, what: str, logs_errors: tuple[int, ...], stop_parameters: list[Schema]
) -> dict[str, Schema]:
    return {
        "/tasks": {
            "get": _op(f"list {what} tasks", (200, _json("The tasks.", _array(_ref("Task"))))),
            "post": _op(
                f"submit a task to the {what}",
                (201, _json("Accepted; the task as stored now.", _ref("Task"))),
                (400, 404, 409, 413, 415),
                body=True,
            ),
        },
        "/tasks/{task_id}": {
            "parameters": [TASK_ID],
            "get": _op(f"get a {what} task", (200, _json("The task.", task)), (400, 404)),
            "delete": _op(
                f"stop a {what} task",
                (204, {"description": "Stopping (or cancelled, if it had not started)."}),
                (400, 404, 409),
                parameters=stop_parameters,
            ),
        },
        "/tasks/{task_id}/logs": {
            "parameters": [TASK_ID],
            "get": _op(
                f"get a {what} task's logs",
                (200, _json("Its last lines of output.", _ref("Logs"))),
                (400, 404, *logs_errors),
                parameters=[TAIL],
            ),
        },
    }


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def _common_routes(what: str, health: Schema) -> dict[str, Schema]:
    return {
        "/health": {"get": _op(f"{what} health", (200, _json("Alive.", health)), open_route=True)},
        "/openapi.json": {
            "get": _op(
                f"{what} OpenAPI document",
                (200, _json("This document.", {"type": "object"})),
                open_route=True,
            )
        },
    }


def _document(title: str, description: str, paths: dict[str, Schema], schemas: Schema) -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": cube.__version__, "description": description},
        "paths": paths,
        "components": {
            "schemas": {**_schemas(), **schemas},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required only when the server was started with a token "
                    "(--token or CUBE_TOKEN).",
                }
            },
        },
        "security": [{"bearer": []}, {}],
    }


_COMMON = (
    "Errors are JSON ({HTTPStatusCode, Message}), including 404 for unknown routes and "
    "405 for a method a route does not have. Request keys are matched case-insensitively; "
    "unknown keys are refused."
)


def worker_document() -> Schema:
    """The worker API's OpenAPI document (a fresh copy each call)."""
    paths = {
        **_common_routes("worker", _ref("WorkerHealth")),
        **_task_routes(_ref("WorkerTask"), "worker", (), [GENERATION]),
        "/stats": {"get": _op("machine statistics", (200, _json("A sample.", _ref("Stats"))))},
    }
    return copy.deepcopy(
        _document("Cube worker", f"Runs tasks on one machine. {_COMMON}", paths, _worker_schemas())
    )


def manager_document() -> Schema:
    """The manager API's OpenAPI document (a fresh copy each call)."""
    events_parameters = [
        _query_count("limit", 0, "At most this many events, newest first (0: all)."),
        {
            "name": "task",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "format": "uuid"},
            "description": "Only this task's events (empty: every task's).",
        },
    ]
    paths = {
        **_common_routes("manager", _ref("ManagerHealth")),
        **_task_routes(_ref("Task"), "manager", (502,), []),
        "/nodes": {"get": _op("list workers", (200, _json("The workers.", _array(_ref("Node")))))},
        "/events": {
            "get": _op(
                "list task events",
                (200, _json("The stored task events.", _array(_ref("TaskEvent")))),
                (400,),
                parameters=events_parameters,
            )
        },
    }
    return copy.deepcopy(
        _document(
            "Cube manager",
            f"Places tasks on workers and keeps them running. {_COMMON}",
            paths,
            _manager_schemas(),
        )
    )


def serve_document(app: bottle.Bottle, document: Schema) -> None:
    """Answer ``GET /openapi.json`` on ``app`` with ``document`` (open without a token:
    :data:`cube.http.OPEN_PATHS` lists it)."""
    text = json.dumps(document)

    @app.get("/openapi.json")
    def openapi() -> str:
        bottle.response.content_type = JSON
        return text
