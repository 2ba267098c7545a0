"""The OpenAPI documents: valid OpenAPI, exactly the apps' routes, served without a
token, and the same rules for a task's fields as the code that reads them."""

from __future__ import annotations

import copy
import json
import re
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bottle
import jsonschema
import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from cube.http import Server
from cube.manager.api import make_app as manager_app
from cube.manager.api import manager_document
from cube.manager.manager import Manager
from cube.runtime.process import ProcessRuntime
from cube.store import JsonCodec, MemoryStore, WireCodec
from cube.task import Task, ValidationError, check_image, check_port, parse_submission
from cube.worker import Worker
from cube.worker.api import make_app as worker_app
from cube.worker.api import worker_document

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
TOKEN = "s3cret"


def _worker(tmp_path: Path) -> Worker:
    runtime = ProcessRuntime(owner="openapi", state_dir=tmp_path)
    return Worker("w", MemoryStore(WireCodec(Task)), runtime, timers=MemoryStore(JsonCodec()))


@pytest.fixture(params=["worker", "manager"])
def api(request, tmp_path) -> Iterator[tuple[bottle.Bottle, dict[str, Any], Callable]]:
    """(app, its document, a factory for the app with a token) for each API."""
    if request.param == "worker":
        worker = _worker(tmp_path)
        yield worker_app(worker), worker_document(), lambda: worker_app(worker, TOKEN)
        worker.close()
    else:
        manager = Manager([])
        yield manager_app(manager), manager_document(), lambda: manager_app(manager, TOKEN)
        manager.close()


def app_routes(app: bottle.Bottle) -> set[tuple[str, str]]:
    return {(r.method, re.sub(r"<(\w+)(?::[^>]*)?>", r"{\1}", r.rule)) for r in app.routes}


def document_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_document_lists_exactly_the_apps_routes(api):
    app, document, _ = api
    assert app_routes(app) == document_routes(document)


def schemas_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object in a document: components, parameters, bodies, answers."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema":
                yield value
            elif key == "schemas":
                yield from value.values()
            else:
                yield from schemas_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from schemas_in(item)


def test_the_document_is_valid_openapi(api):
    _, document, _ = api
    OPENAPI_31_VALIDATOR.validate(document)
    schemathesis.openapi.from_dict(document).validate()
    schemas = list(schemas_in(document))
    assert len(schemas) > 10
    for schema in schemas:
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_validator_would_notice_a_broken_document(api):
    _, document, _ = api
    broken = copy.deepcopy(document)
    broken["paths"]["/tasks"]["get"]["responses"] = "none"
    with pytest.raises(jsonschema_rs.ValidationError):
        OPENAPI_31_VALIDATOR.validate(broken)


def test_every_route_but_the_open_ones_documents_401(api):
    _, document, _ = api
    for path, item in document["paths"].items():
        for method in set(item) & METHODS:
            needs_token = path not in ("/health", "/openapi.json")
            assert ("401" in item[method]["responses"]) == needs_token, (method, path)


def test_the_document_is_served_without_a_token_when_one_is_required(api):
    _, document, with_token = api
    with Server(with_token()) as server:
        served = requests.get(f"{server.url}/openapi.json", timeout=5)
        assert served.status_code == 200
        assert served.headers["Content-Type"] == "application/json"
        assert served.json() == json.loads(json.dumps(document))
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200

        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        refused = schema["/tasks"]["GET"].Case().call_and_validate(base_url=server.url)
        assert refused.status_code == 401
        assert refused.json()["HTTPStatusCode"] == 401
        allowed = requests.get(
            f"{server.url}/tasks", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
        )
        assert allowed.status_code == 200


# ------------------------------------------------- the document's rules are the code's


def _field(name: str) -> dict[str, Any]:
    return worker_document()["components"]["schemas"]["TaskSpec"]["properties"][name]


def _task_accepts(field: str) -> Callable[[str], None]:
    """Whether a submission with this value in ``field`` is accepted: the documents
    describe what clients may submit."""

    def parse(value: str) -> None:
        parse_submission({"Name": "x", "Image": "x", field: value})

    return parse


def _binding_accepts(value: str) -> None:
    parse_submission({"Name": "x", "Image": "x", "PortBindings": {"80": value}})


def _port_accepts(value: str) -> None:
    check_port(value, "port")


CODE: dict[str, tuple[dict[str, Any], Callable[[str], Any]]] = {
    "Image": (_field("Image"), check_image),
    "Name": (_field("Name"), _task_accepts("Name")),
    "HealthCheck": (_field("HealthCheck"), _task_accepts("HealthCheck")),
    "RestartPolicy": (_field("RestartPolicy"), _task_accepts("RestartPolicy")),
    "port": ({"type": "string", **_field("ExposedPorts")["propertyNames"]}, _port_accepts),
    "HostPort": (_field("PortBindings")["additionalProperties"], _binding_accepts),
}
# Values on the edges of each rule, which random drawing seldom reaches.
EDGES: dict[str, list[str]] = {
    "Image": [
        "a:" + "b" * 128, "a:" + "b" * 129, "a" * 256, "a" * 257, "localhost/a",
        "localhost:5000/a", "a.b/c", "A.b/c", "Ab/c", "a:1/b", "a@sha256:" + "0" * 64,
        "a@sha256:" + "0" * 63, "a__b--c.d", "a___b", "a/-b",
    ],
    "Name": [
        "x" * 128, "x" * 129, " ", "\u3000", "\u3000a", "a\x7f", "a\x85", "a b", "-a", ".a",
        "_a", "a-b.c_d", "0", "a\u202e", "\u00e9",
    ],
    "HealthCheck": ["/" + "x" * 1023, "/" + "x" * 1024, "/", "health", "/a b", "/a\r\nb", "/%0A"],
    "RestartPolicy": ["always", "Always", "no "],
    "port": ["65535", "65536", "00080/udp", "000080", "0", "1/sctp", "80/TCP", "80/"],
    "HostPort": ["0", "65535", "65536", "0" * 252 + "8080", "0" * 253 + "8080", "-1"],
}  # fmt: skip
# ASCII without line breaks: the code also takes non-ASCII digits and a trailing newline,
# which the documents do not promise (a leniency of the code, not a rule to document).
ASCII = "".join(c for c in string.printable if c not in "\n\r\x0b\x0c")


def _code_accepts(accepts: Callable[[str], Any], value: str) -> bool:
    try:
        accepts(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("field", sorted(CODE))
def test_the_document_and_the_code_agree_on_a_field(field, monkeypatch):
    monkeypatch.delenv("CUBE_ALLOWED_IMAGES", raising=False)
    schema, accepts = CODE[field]
    validator = jsonschema_rs.validator_for(schema)
    pattern = schema.get("pattern")
    values = st.text(ASCII, max_size=40) | st.sampled_from(EDGES[field] + schema.get("enum", []))
    if pattern:
        values |= st.from_regex(pattern, fullmatch=True)

    @settings(
        max_examples=150, derandomize=True, database=None, deadline=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(values)
    def agree(value: str) -> None:
        assert validator.is_valid(value) == _code_accepts(accepts, value), value

    agree()
