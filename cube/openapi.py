"""OpenAPI 3.1 documents for the worker and manager APIs, generated from the code.

Nothing here describes a field or a route by hand. The paths come from the Bottle app's
own routes: each is declared with a :class:`Doc` (a summary, the answer's wire type,
the errors it can answer, its query parameters) beside its handler. The schemas come
from the wire types' declarations (:mod:`cube.wire`) through msgspec's JSON Schema, so
the bounds, patterns and enums a document shows are the ones the code checks.
``tests/test_openapi.py`` checks that every route is in its document, and
``tests/test_fuzz.py`` fuzzes running servers against the documents they serve.

Request bodies are the strict variants of the wire types (``TaskSpec``,
``TaskEventSpec``): what a client may submit. Answers are the plain types, where every
field of the Go Cube's shape is present and ours appear when set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import bottle
import msgspec

import cube
from cube.http import MAX_BODY, MAX_DEPTH
from cube.messages import ErrorBody
from cube.task import State
from cube.wire import OURS, Wire, hints_of, wire_class

Schema = dict[str, Any]
JSON = "application/json"
REF = "#/components/schemas/{name}"
MAX_TAIL = 100_000

ERRORS = {
    400: "Invalid input; the message names the field and says why.",
    401: "A token is required: send 'Authorization: Bearer <token>'.",
    403: "Refused: an epoch this worker cannot believe (no proof, or one that does not check).",
    404: "No such task.",
    408: "The request did not arrive in time.",
    409: "The task's state does not allow this (see the state machine).",
    410: "Gone: a watch's index from before the server restarted, or older than the "
    "history it keeps (list again without it, or from index 0, and watch from there); or "
    "the output of a task that ran, which neither the manager kept nor its worker has.",
    411: "A body must come with a Content-Length.",
    413: f"The body is over {MAX_BODY} bytes.",
    415: "The body is not sent as JSON.",
    502: "The task's worker could not be asked.",
}


@dataclass(frozen=True)
class Query:
    """A query parameter a route reads, and its schema."""

    name: str
    description: str
    schema: Schema


@dataclass(frozen=True)
class Header:
    """A request header that every route of an app reads (in a plugin, not a route),
    its schema, and what a bad value answers (400, and more), which every route then
    documents."""

    name: str
    description: str
    schema: Schema
    errors: tuple[int, ...] = (400,)


def takes_header(app: bottle.Bottle, header: Header) -> None:
    """Document ``header`` on every route of ``app``."""
    app.config["cube.headers"] = (*app.config.get("cube.headers", ()), header)


def count(name: str, description: str, default: int, limit: int = MAX_TAIL) -> Query:
    """A whole-number query parameter (``cube.http.query_int`` reads them)."""
    schema = {"type": "integer", "minimum": 0, "maximum": limit, "default": default}
    return Query(name, description, schema)


# What ``cube.http.list_query`` reads: a task list narrowed and paged.
LIST = (
    count(
        "since",
        "Only the tasks changed after this index (X-Cube-Index); those forgotten since are "
        "named in X-Cube-Forgotten. An index from before the server's restart, or older "
        "than the history it keeps, answers 410: list again.",
        0,
        1 << 62,
    ),
    Query(
        "state",
        "Only the tasks in this state, by name or number (Running or 2).",
        {"enum": [*(s.name for s in State), *(str(int(s)) for s in State)]},
    ),
    Query("after", "A page starting after this task ID.", {"type": "string", "format": "uuid"}),
    count("limit", "At most this many tasks (0: all).", 0),
)


@dataclass(frozen=True)
class Doc:
    """What a route's document says: given to ``app.route(..., doc=Doc(...))``.

    ``answer`` is the wire type of the success body (``list[Task]`` for a list,
    ``dict`` for any object, ``None`` for no body); ``body`` the types a request body
    may have; ``open`` marks a route that needs no token."""

    summary: str
    answer: Any = None
    status: int = 200
    said: str = "Done."
    errors: tuple[int, ...] = ()
    body: tuple[type, ...] = ()
    query: tuple[Query, ...] = ()
    open: bool = False


def submit_doc(what: str) -> Doc:
    """The document of ``POST /tasks``, the same on a worker and a manager."""
    from cube.task import Task, TaskEvent

    return Doc(
        f"submit a task to the {what}",
        Task,
        status=201,
        said="Accepted; the task as stored now.",
        errors=(400, 404, 409, 413, 415),
        body=(Task.__strict__, TaskEvent.__strict__),
    )


TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
    "description": "The task's ID (the nil UUID and non-UUIDs answer 400).",
}
_PARAMETER = re.compile(r"<(\w+)(?::[^>]*)?>")
_SECURITY = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Required only when the server was started with a token "
        "(--token or CUBE_TOKEN).",
    }
}
_COMMON = (
    "Errors are JSON ({HTTPStatusCode, Message}), including 404 for unknown routes and "
    "405 for a method a route does not have. Request keys are matched case-insensitively; "
    "unknown keys are refused. A request must arrive whole within a few seconds (else "
    "408), and a body shorter than its Content-Length is a 400."
)


def document(app: bottle.Bottle) -> Schema:
    """The OpenAPI document of ``app``: its documented routes and the wire types they
    use. Every route must carry a :class:`Doc`."""
    paths: dict[str, Schema] = {}
    types: list[Any] = [ErrorBody]
    headers: tuple[Header, ...] = app.config.get("cube.headers", ())
    for route in app.routes:
        doc = route.config.get("doc")
        if not isinstance(doc, Doc):
            raise TypeError(f"route {route.method} {route.rule} has no Doc")
        path = _PARAMETER.sub(r"{\1}", route.rule)
        item = paths.setdefault(path, {})
        if "{task_id}" in path:
            item["parameters"] = [TASK_ID]
        item[route.method.lower()] = _operation(doc, headers)
        types += [t for t in (doc.answer, *doc.body) if t not in (None, dict)]
    _, schemas = msgspec.json.schema_components(types, schema_hook=_schema_hook, ref_template=REF)
    answers = _answer_types([r.config["doc"].answer for r in app.routes])
    for name, schema in schemas.items():
        _tidy(schema, answers.get(name))
    title, description = app.config.get("cube.openapi", ("Cube", ""))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": cube.__version__,
            "description": f"{description} {_COMMON}".strip(),
        },
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": _SECURITY},
        "security": [{"bearer": []}, {}],
    }


def serve_document(app: bottle.Bottle, title: str, description: str) -> None:
    """Answer ``GET /openapi.json`` on ``app`` with its document, made on first use
    (open without a token, as its ``Doc`` says)."""
    app.config["cube.openapi"] = (title, description)
    made: list[bytes] = []

    def openapi() -> bytes:
        if not made:
            made.append(msgspec.json.encode(document(app)))
        bottle.response.content_type = JSON
        return made[0]

    doc = Doc(f"{title} OpenAPI document", dict, said="This document.", open=True)
    app.route("/openapi.json", "GET", openapi, doc=doc)


# ---------------------------------------------------------------------- helpers


def _operation(doc: Doc, headers: tuple[Header, ...] = ()) -> Schema:
    codes = sorted({*doc.errors, *(() if doc.open else (401,))})
    if doc.body:
        codes = sorted({*codes, 408, 411})
    codes = sorted({*codes, *(code for header in headers for code in header.errors)})
    answer: Schema = {"description": doc.said}
    if doc.answer is not None:
        answer["content"] = {JSON: {"schema": _schema_of(doc.answer)}}
    operation: Schema = {
        "summary": doc.summary,
        "operationId": _operation_id(doc.summary),
        "responses": {str(doc.status): answer}
        | {
            str(code): {
                "description": ERRORS[code],
                "content": {JSON: {"schema": {"$ref": REF.format(name="ErrorBody")}}},
            }
            for code in codes
        },
    }
    parameters = [
        {"name": p.name, "in": "query" if isinstance(p, Query) else "header",
         "required": False, "schema": p.schema, "description": p.description}
        for p in (*doc.query, *headers)
    ]  # fmt: skip
    if parameters:
        operation["parameters"] = parameters
    if doc.body:
        operation["requestBody"] = {
            "required": True,
            "description": "application/x-www-form-urlencoded is read as JSON too (as "
            f"`curl -d` sends it); JSON nested deeper than {MAX_DEPTH} levels is refused.",
            "content": {JSON: {"schema": {"oneOf": [_schema_of(t) for t in doc.body]}}},
        }
    if doc.open:
        operation["security"] = []
    return operation


def _schema_of(kind: Any) -> Schema:
    if kind is dict:
        return {"type": "object"}
    origin = getattr(kind, "__origin__", None)
    if origin is list:
        return {"type": "array", "items": _schema_of(kind.__args__[0])}
    return {"$ref": REF.format(name=_name(kind))}


def _name(kind: Any) -> str:
    origin = getattr(kind, "__origin__", None)
    return _name(kind.__args__[0]) if origin is list else kind.__name__


def _answer_types(answers: list[Any]) -> dict[str, type[Wire]]:
    """The wire types answers are made of, nested ones included (a TaskEvent's Task)."""
    found: dict[str, type[Wire]] = {}
    todo = [getattr(a, "__args__", (a,))[0] for a in answers]
    while todo:
        cls = todo.pop()
        if isinstance(cls, type) and issubclass(cls, Wire) and cls.__name__ not in found:
            found[cls.__name__] = cls
            todo += [wire_class(hint) for hint in hints_of(cls).values()]
    return found


def _tidy(schema: Schema, answer: type[Wire] | None) -> None:
    """Defaults that are not JSON values of the field's type go (a port set's default
    is an empty tuple in Python, null on the wire); an answer lists every field it
    always has as required (all but the ones Cube adds only when set)."""
    for prop in schema.get("properties", {}).values():
        if isinstance(prop.get("default"), list) and "array" not in str(prop.get("type")):
            del prop["default"]
    if answer is not None:
        hints = hints_of(answer)
        schema["required"] = [
            f.encode_name
            for f in msgspec.structs.fields(answer)
            if OURS not in getattr(hints[f.name], "__metadata__", ())
        ]


def _schema_hook(kind: type) -> Schema:
    schema = getattr(kind, "__json_schema__", None)
    if schema is None:
        raise NotImplementedError(f"no JSON schema for {kind!r}")
    return dict(schema)


def _operation_id(summary: str) -> str:
    words = summary.replace("'", "").split()
    return words[0].lower() + "".join(w.capitalize() for w in words[1:])
