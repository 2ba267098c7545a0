"""The field types of Cube's wire types: bounds, patterns, Go's shapes, messages.

Each type is declared once, as an ``Annotated`` type carrying msgspec's ``Meta`` (bounds,
and the pattern the OpenAPI documents show) and a :class:`~cube.wire.Rule` (the check in
Python, the JSON shape, the messages, and a stricter type for submissions). Patterns are
written in the subset of regular expressions that Python and JavaScript read alike
(ASCII classes such as ``[0-9]``, never ``\\d``), and checked with ``re.fullmatch``,
which is what a JSON Schema validator's anchored search means.

Two levels of rules: what is *read* (stored values, answers from workers) keeps the
rules that held when it was written, so a store written by an older Cube stays
readable; what a client *submits* meets the strict types: names that are also valid
Docker container names, health checks that are plain URL paths, and no control
characters, bidirectional overrides or unpaired surrogates in any text.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from cube.wire import Rule, ValidationError

# Upper bounds keep arithmetic sane and reject typos like a memory size in bits.
MAX_CPU = 1024.0  # cores
MAX_BYTES = 1 << 50  # 1 PiB, for Memory and Disk
MAX_COUNT = 1 << 31
MAX_GENERATION = (1 << 53) - 1  # exact in every JSON reader, JavaScript's included
REASON_LIMIT = 4096  # characters of a task's Reason

# ------------------------------------------------------------------ patterns

# Control characters (C0, DEL, C1) and the invisible marks that reorder text on screen.
UNSAFE_CHARS = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
SAFE_TEXT_PATTERN = rf"^[^{UNSAFE_CHARS}]*$"
# Docker's rule for container names (daemon/names), so a task's name is one too.
NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
# A URL path of printable ASCII (anything else percent-encoded), or nothing.
HEALTH_CHECK_PATTERN = r"^(?:/[!-~]*)?$"
# What older Cubes accepted, for reading what they stored.
STORED_HEALTH_CHECK_PATTERN = r"^(?:/[\s\S]*)?$"
# Docker's reference grammar (distribution/reference): an optional registry (it has a dot
# or a port, or is "localhost"), lowercase path components, an optional tag and digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+(?::[0-9]+)?|[a-zA-Z0-9-]+:[0-9]+|localhost)"
IMAGE_PATTERN = (
    rf"^(?:{_REGISTRY}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
IMAGE_FORMAT = "image-reference"  # the grammar's name, for tools that generate examples
_PORT_NUMBER = (
    r"(?:0{0,4}[1-9]|0{0,3}[1-9][0-9]|0{0,2}[1-9][0-9]{2}|0?[1-9][0-9]{3}"
    r"|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
PORT_PATTERN = rf"^{_PORT_NUMBER}(?:/(?:tcp|udp|sctp))?$"
HOST_PORT_PATTERN = (
    r"^(?:0*(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
    r"|6553[0-5]))?$"
)
HOST_IP_PATTERN = r"^[0-9A-Za-z.:%_-]*$"
_UNSAFE = re.compile(rf"[{UNSAFE_CHARS}\ud800-\udfff]")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


@functools.lru_cache(maxsize=4096)
def _matches(pattern: str, text: str) -> bool:
    """Remembered: a cluster runs a handful of images and health paths, and every stored
    task is checked again when a store is read."""
    return re.fullmatch(pattern, text) is not None


def refuse_unsafe(text: str) -> str:
    """``text``, unless it holds a control character, a bidirectional mark or an
    unpaired surrogate: those forge log lines, rewrite terminals, or crash printing."""
    found = _UNSAFE.search(text)
    if found is not None:
        char = found[0]
        surrogate = "\ud800" <= char <= "\udfff"
        what = "an unpaired surrogate" if surrogate else "a control or text-direction character"
        raise ValueError(f"must not contain {what} (U+{ord(char):04X} at {found.start()})")
    return text


def _string(
    limit: int,
    *,
    pattern: str | None = None,
    safe: bool = False,
    strict: Any = None,
    empty: str | None = None,
    schema: dict[str, Any] | None = None,
    **hints: str,
) -> Any:
    """A string type: at most ``limit`` characters (at least one when ``empty`` says
    what to give), matching ``pattern`` whole, free of unsafe characters when ``safe``.
    The pattern is shown in the OpenAPI documents and checked here with ``fullmatch``
    (msgspec's own pattern check searches, which lets a final newline through)."""
    shown = {**({"pattern": pattern} if pattern else {}), **(schema or {})}
    meta = Meta(min_length=1 if empty else None, max_length=limit, extra_json_schema=shown or None)
    hint = hints.get("mismatch", "is not in the expected form")

    def check(text: str) -> str:
        if safe:
            refuse_unsafe(text)
        if pattern is not None and not _matches(pattern, text):
            raise ValueError(f"{text!r} {hint}")
        return text

    needs_check = safe or pattern is not None
    if empty:
        hints["empty"] = empty
    return Annotated[str, meta, Rule(check=check if needs_check else None, strict=strict, **hints)]


def _text(limit: int) -> Any:
    """Free text: anything when read, no unsafe characters when submitted."""
    return _string(limit, strict=_string(limit, pattern=SAFE_TEXT_PATTERN, safe=True))


# -------------------------------------------------------------------- strings

Text = _text(256)
LongText = _text(REASON_LIMIT)
_NAME_HINT = (
    "is not a valid name: letters, digits, '_', '.' and '-', starting with a letter or "
    "digit (Docker's rule for container names)"
)
Name = _string(
    128,
    empty="a task needs a name",
    strict=_string(
        128, pattern=NAME_PATTERN, safe=True, empty="a task needs a name", mismatch=_NAME_HINT
    ),
)
_PATH_HINT = "must be a URL path starting with '/', like '/health'"
HealthCheck = _string(
    1024,
    pattern=STORED_HEALTH_CHECK_PATTERN,
    strict=_string(
        1024,
        pattern=HEALTH_CHECK_PATTERN,
        safe=True,
        mismatch=f"{_PATH_HINT}, of printable ASCII (percent-encode the rest)",
    ),
    mismatch=_PATH_HINT,
)
_IMAGE_HINT = "is not an image reference like 'name', 'name:tag' or 'repo/name:tag'"
Image = _string(
    256,
    pattern=IMAGE_PATTERN,
    empty="an image is required, e.g. 'cube/echo'",
    schema={
        "format": IMAGE_FORMAT,
        "description": "A Docker image reference (distribution/reference's grammar); "
        "CUBE_ALLOWED_IMAGES may narrow it.",
    },
    mismatch=_IMAGE_HINT,
)
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
DockerRestartPolicy = Annotated[
    Literal["", "no", "always", "unless-stopped", "on-failure"],
    Rule(enum=f"{{value}} is not one of {RESTART_POLICIES[1:]} (or '')"),
]


def check_image(value: Any, where: str = "Image") -> str:
    """An image reference Docker would accept, such as ``cube/echo`` or ``nginx:1.27``."""
    if not isinstance(value, str):
        raise ValidationError(where, f"expected a string, got {_kind(value)}")
    if not value:
        raise ValidationError(where, "an image is required, e.g. 'cube/echo'")
    if len(value) > 256:
        raise ValidationError(where, "longer than 256 characters")
    if not _matches(IMAGE_PATTERN, value):
        raise ValidationError(where, f"{value!r} {_IMAGE_HINT}")
    return value


def check_allowed(image: str, where: str = "Image") -> str:
    """``image``, when ``CUBE_ALLOWED_IMAGES`` (comma-separated patterns such as
    ``cube/*,nginx:*``) is unset or allows it. Checked when work is accepted, never when
    a store is read: tightening the list later must not make stored tasks unreadable."""
    allowed = os.environ.get("CUBE_ALLOWED_IMAGES", "").strip()
    if allowed and not any(fnmatch.fnmatchcase(image, p.strip()) for p in allowed.split(",")):
        raise ValidationError(
            where, f"{image!r} is not allowed here (CUBE_ALLOWED_IMAGES={allowed})"
        )
    return image


# -------------------------------------------------------------------- numbers


def _count(limit: int, **extra: Any) -> Any:
    return Annotated[int, Meta(ge=0, le=limit, **extra)]


Count = _count(MAX_COUNT)
Bytes = _count(MAX_BYTES, description="Bytes.")
Generation = _count(MAX_GENERATION)
Cores = Annotated[
    float,
    Meta(ge=0, le=MAX_CPU, description="Cores."),
    Rule(
        to_wire=lambda cores: int(cores) if float(cores).is_integer() else cores,
        range=f"must be a number from 0 to {MAX_CPU:g}",
    ),
]

# ---------------------------------------------------------------------- times

ZERO_TIME = "0001-01-01T00:00:00Z"
_ZERO = datetime(1, 1, 1, tzinfo=UTC)  # Go's zero time: "not set", read as None


def format_time(value: datetime | None) -> str:
    """RFC 3339 in UTC; ``None`` is Go's zero time. Trailing zero digits are dropped."""
    if value is None:
        return ZERO_TIME
    value = value.astimezone(UTC)
    text = value.replace(microsecond=0, tzinfo=None).isoformat()  # years < 1000 padded too
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_time(text: Any, where: str) -> datetime | None:
    """An RFC 3339 time, read as the wire types read it: in UTC, rounded to the
    microsecond (Go writes nanoseconds), and ``None`` for Go's zero instant."""
    if text == ZERO_TIME:
        return None
    if not isinstance(text, str):
        raise ValidationError(where, f"expected an RFC 3339 time string, got {_kind(text)}")
    try:
        return _in_utc(msgspec.convert(text, datetime))
    except msgspec.ValidationError:
        raise ValidationError(
            where, f"{text!r} is not an RFC 3339 time like {ZERO_TIME!r}"
        ) from None
    except ValueError as exc:
        raise ValidationError(where, str(exc)) from None


def _in_utc(value: datetime | None) -> datetime | None:
    """Go's zero instant (however spelled) is unset; other times are kept in UTC."""
    if value is None or (value.tzinfo is UTC and value != _ZERO):
        return value
    try:
        moment = value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{value.isoformat()!r} is not a valid time") from None
    return None if moment == _ZERO else moment


# What msgspec's RFC 3339 parser takes: a 'T' (or 't', or a space), any number of
# fraction digits (kept to the microsecond), and a zone, with or without its colon.
TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:?[0-9]{2})$"
)
Time = Annotated[
    Annotated[datetime, Meta(tz=True, extra_json_schema={"pattern": TIME_PATTERN})] | None,
    Meta(
        extra_json_schema={
            "description": f"RFC 3339, in UTC in answers; {ZERO_TIME} (or null) means not set.",
        }
    ),
    Rule(
        check=_in_utc,
        to_wire=format_time,
        type="expected an RFC 3339 time string",
        zone="has no time zone: end it with Z, or an offset like +02:00",
    ),
]

# ------------------------------------------------------------------------ IDs

NIL_UUID = "00000000-0000-0000-0000-000000000000"


def _not_nil(value: uuid.UUID) -> uuid.UUID:
    if value.int == 0:
        raise ValueError("the nil UUID is not an ID; omit it to get one")
    return value


ID = Annotated[
    uuid.UUID,
    Meta(extra_json_schema={"not": {"const": NIL_UUID}, "description": "A UUID, not nil."}),
    Rule(check=_not_nil, type="expected a UUID string"),
]


def parse_uuid(value: Any, where: str = "ID") -> uuid.UUID:
    """Parse a task or event ID, raising :class:`ValidationError` when it is not one."""
    if not isinstance(value, str):
        raise ValidationError(where, f"expected a UUID string, got {_kind(value)}")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValidationError(where, f"{value!r} is not a UUID") from None
    if parsed.int == 0:
        raise ValidationError(where, "the nil UUID is not a task ID; omit it to get one")
    return parsed


# ---------------------------------------------------------------------- ports

_PORT = re.compile(r"([0-9]{1,5})(?:/(tcp|udp|sctp))?")


def check_port(value: Any, where: str) -> str:
    """A container port such as ``80/tcp``; a bare ``80`` means TCP, as in Docker."""
    if not isinstance(value, str):
        raise ValidationError(where, f"expected a string, got {_kind(value)}")
    port = _canonical_port(value)
    if port is None:
        raise ValidationError(where, f"{value!r} is not a port like '80/tcp'")
    return port


@functools.lru_cache(maxsize=4096)
def _canonical_port(text: str) -> str | None:
    match = _PORT.fullmatch(text)
    if not match or not 0 < int(match[1]) < 65536:
        return None
    return f"{int(match[1])}/{match[2] or 'tcp'}"


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(where, f"expected an object, got {_kind(value)}")
    return value


def _host_port(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(where, f"expected a string, got {_kind(value)}")
    if not _matches(HOST_PORT_PATTERN, value):
        raise ValidationError(where, f"{value!r} is not a host port number")
    return value


def _host_ip(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(where, f"expected a string, got {_kind(value)}")
    if len(value) > 256 or not _matches(HOST_IP_PATTERN, value):
        raise ValidationError(where, f"{value!r} is not an IP address")
    return value


def _from_wire(read: Callable[[Any, str], Any]) -> Callable[[type, Any], Any]:
    """A field type's decoder: a ValidationError becomes the ValueError msgspec
    reports, its field given relative to the port map (``['80/tcp'][0].HostPort``)."""

    def decoder(cls: type, value: Any) -> Any:
        try:
            return read(value, "")
        except ValidationError as exc:
            raise ValueError(f"{exc.field}: {exc.reason}" if exc.field else exc.reason) from None

    return classmethod(decoder)  # type: ignore[return-value]


_PORT_KEYS = {"pattern": PORT_PATTERN}
_BINDING_SCHEMA = {
    "type": "object",
    "properties": {
        "HostIp": {"type": "string", "maxLength": 256, "pattern": HOST_IP_PATTERN},
        "HostPort": {"type": "string", "pattern": HOST_PORT_PATTERN},
    },
    "additionalProperties": False,
}


class PortSet(tuple[str, ...]):
    """Ports a task exposes, as Docker's port set on the wire: ``{"80/tcp": {}}``.
    Sorted and canonical (``"80"`` is ``"80/tcp"``)."""

    __slots__ = ()
    __json_schema__: ClassVar[dict[str, Any]] = {
        "type": ["object", "null"],
        "propertyNames": _PORT_KEYS,
        "additionalProperties": {"type": ["object", "null"], "maxProperties": 0},
        "description": 'Docker\'s port set: {"80/tcp": {}}; a bare "80" means TCP.',
    }

    @staticmethod
    def read(value: Any, where: str) -> PortSet:
        ports = []
        for key, inner in _mapping(value, where).items():
            at = f"{where}[{key!r}]"
            if inner not in ({}, None):
                raise ValidationError(at, "values must be {} as in Docker's port set")
            ports.append(check_port(key, at))
        return PortSet(sorted(set(ports)))

    __from_wire__ = _from_wire(read)

    @staticmethod
    def to_wire(ports: tuple[str, ...]) -> dict[str, dict[str, Any]] | None:
        return {port: {} for port in ports} or None


class PortMap(dict[str, list[dict[str, str]]]):
    """Where each port is published, as Docker's port map on the wire."""

    __slots__ = ()
    __json_schema__: ClassVar[dict[str, Any]] = {
        "type": ["object", "null"],
        "propertyNames": _PORT_KEYS,
        "additionalProperties": {"type": ["array", "null"], "items": _BINDING_SCHEMA},
        "description": "Docker's port map: where each port is published.",
    }

    @staticmethod
    def read(value: Any, where: str) -> PortMap:
        out = PortMap()
        for key, bindings in _mapping(value, where).items():
            at = f"{where}[{key!r}]"
            port = check_port(key, at)
            if bindings is not None and not isinstance(bindings, list):
                raise ValidationError(at, f"expected a list of bindings, got {_kind(bindings)}")
            out[port] = [
                b if _plain_binding(b) else _binding(b, f"{at}[{i}]")
                for i, b in enumerate(bindings or ())
            ]
        return out

    __from_wire__ = _from_wire(read)


_BINDING_KEYS = {"HostIp", "HostPort"}


def _plain_binding(value: Any) -> bool:
    """A binding spelled as Docker and Cube write it, with good values (most of them:
    checked without building a new one)."""
    if type(value) is not dict or value.keys() != _BINDING_KEYS:
        return False
    ip, port = value["HostIp"], value["HostPort"]
    return type(ip) is str and type(port) is str and _good_binding(ip, port)


@functools.lru_cache(maxsize=4096)
def _good_binding(ip: str, port: str) -> bool:
    return len(ip) <= 256 and _matches(HOST_IP_PATTERN, ip) and _matches(HOST_PORT_PATTERN, port)


def _binding(value: Any, where: str) -> dict[str, str]:
    given = {str(k).lower(): v for k, v in _mapping(value, where).items()}
    if set(given) - {"hostip", "hostport"}:
        raise ValidationError(where, "bindings have only HostIp and HostPort")
    return {
        "HostIp": _host_ip(given.get("hostip", ""), f"{where}.HostIp"),
        "HostPort": _host_port(given.get("hostport", ""), f"{where}.HostPort"),
    }


class PortBindings(dict[str, str]):
    """Container port -> the host port to publish it on."""

    __slots__ = ()
    __json_schema__: ClassVar[dict[str, Any]] = {
        "type": ["object", "null"],
        "propertyNames": _PORT_KEYS,
        "additionalProperties": {"type": "string", "pattern": HOST_PORT_PATTERN},
        "description": "Container port -> host port to publish it on.",
    }

    @staticmethod
    def read(value: Any, where: str) -> PortBindings:
        return PortBindings(
            {
                check_port(key, f"{where}[{key!r}]"): _host_port(host, f"{where}[{key!r}]")
                for key, host in _mapping(value, where).items()
            }
        )

    __from_wire__ = _from_wire(read)


def _none_if_empty(value: Any) -> Any:
    return value or None


Ports = Annotated[PortSet, Rule(to_wire=PortSet.to_wire)]
HostPorts = Annotated[PortMap, Rule(to_wire=_none_if_empty)]
Bindings = Annotated[PortBindings, Rule(to_wire=_none_if_empty)]
