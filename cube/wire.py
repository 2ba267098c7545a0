"""The wire: every type Cube sends or receives, declared once as a msgspec Struct.

A wire type is a :class:`Wire` subclass: its fields carry Python names and types
(``container_id: Text``), and the Go Cube's JSON names come from the field names
(``container_id`` -> ``ContainerID``). From that one declaration come:

- validation (:meth:`Wire.from_wire`): msgspec checks types, bounds and patterns in C;
  the field types in :mod:`cube.fields` add what msgspec cannot say (canonical ports,
  Go's zero time as "unset") and a readable message for each rule;
- the JSON (:meth:`Wire.to_wire`, :func:`encode`): Go's field names and order, zero
  times, ``null`` for empty maps, and the fields that are ours left out when unset, so a
  Go Cube reads exactly the shape it knows;
- the OpenAPI schemas (:func:`cube.openapi.document`), through msgspec's JSON Schema.

Keys are matched case-insensitively on input, as Go's decoder does, but an unknown key
is an error naming it: a typo must not quietly become a default. Errors are
:class:`ValidationError`, whose ``field`` is a path such as ``TaskEvent.Task.Name``.

Why msgspec: ``bench/bench_wire.py`` decodes 10,000 stored tasks and encodes a list of
1,000 with msgspec and with pydantic v2 declaring the same rules. msgspec decodes stored
text 1.6-2x faster (what a manager's recovery and every client read cost), encodes about
as fast, and with Cube's declarations imports in half the time pydantic alone takes
(the CLI pays it on every run). Its Structs are also plain objects to the code that
uses them: built without validation, as the dataclasses they replace were.
"""

from __future__ import annotations

import functools
import json
import operator
import re
import typing
import uuid
from collections.abc import Callable
from enum import IntEnum
from typing import Annotated, Any, ClassVar, Self

import msgspec

_ACRONYMS = {"id": "ID", "http": "HTTP"}


def go_name(attribute: str) -> str:
    """The Go field name of a Python attribute: ``container_id`` -> ``ContainerID``."""
    return "".join(_ACRONYMS.get(part, part.capitalize()) for part in attribute.split("_"))


class ValidationError(ValueError):
    """Bad input: the message names the field and says why."""

    http_status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field, self.reason = field, reason


# ------------------------------------------------------------------ field metadata


class Rule:
    """What a field type adds to msgspec, as metadata in its ``Annotated`` type.

    ``check`` runs after msgspec's own checks (``value -> value``, raising ValueError
    with the reason); ``to_wire`` turns the Python value into its JSON value; ``hints``
    are readable reasons for msgspec's failures (keys: ``empty``, ``mismatch``,
    ``type``, ``range``, ``enum``); ``strict`` is the type a client's submission must meet
    instead (stored values and answers are read with the plain one)."""

    def __init__(
        self,
        *,
        check: Callable[[Any], Any] | None = None,
        to_wire: Callable[[Any], Any] | None = None,
        strict: Any = None,
        **hints: str,
    ) -> None:
        self.check, self.to_wire, self.strict, self.hints = check, to_wire, strict, hints


class _Ours:
    """Marks a field Cube adds to the Go Cube's shape: left out of the JSON while it
    holds its default, so a Go Cube sees exactly the fields it knows."""

    def __repr__(self) -> str:
        return "OURS"


OURS = _Ours()


def rule_of(hint: Any) -> Rule | None:
    for item in getattr(hint, "__metadata__", ()):
        if isinstance(item, Rule):
            return item
    return None


def hints_of(cls: type) -> dict[str, Any]:
    """Each field's declared type, ``Annotated`` metadata included."""
    return typing.get_type_hints(cls, include_extras=True)


class _Plan:
    """What :class:`Wire` derives per class from its declaration, once: the field types
    by wire name, and per field what ``check`` (the checks msgspec cannot make) and
    ``to_wire`` do with it, as plain tuples, so that a store of 10,000 tasks walks lists
    rather than looking anything up."""

    def __init__(self, cls: type[Wire]) -> None:
        hints = hints_of(cls)
        fields = msgspec.structs.fields(cls)
        self.types = {f.encode_name: hints[f.name] for f in fields}
        self.names = {f.encode_name.lower(): f.encode_name for f in fields}
        self._checks: list[tuple[str, str, Callable[[Any], Any]]] = []
        self._encodes: list[tuple[str, Callable[[Any], Any] | None, bool, Any]] = []
        for f in fields:
            rule = rule_of(hints[f.name])
            convert = (rule.to_wire if rule is not None else None) or _converter(hints[f.name])
            ours = OURS in getattr(hints[f.name], "__metadata__", ())
            self._encodes.append((f.encode_name, convert, ours, f.default))
            if rule is not None and rule.check is not None:
                self._checks.append((f.name, f.encode_name, rule.check))
        self._values = _getter([f.name for f in fields])  # every field's value, in order
        self._checked = _getter([name for name, _, _ in self._checks])

    def check(self, obj: Any) -> None:
        """Run each field's own check; a check may answer a normalised value, which is
        kept."""
        for (name, wire_name, check), value in zip(self._checks, self._checked(obj), strict=True):
            try:
                checked = check(value)
            except (ValueError, TypeError) as exc:
                raise ValueError(f".{wire_name}: {exc}") from None
            if checked is not value:
                msgspec.structs.force_setattr(obj, name, checked)

    def to_wire(self, obj: Any) -> dict[str, Any]:
        """The object as Go's JSON has it (Cube's own fields only when not default)."""
        out = {}
        for (wire_name, convert, ours, default), value in zip(
            self._encodes, self._values(obj), strict=True
        ):
            if ours and value == default:
                continue
            out[wire_name] = value if convert is None else convert(value)
        return out


def _getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """A function answering the values of ``names`` of an object, as a tuple, in one
    call (``operator.attrgetter`` answers a bare value for one name, nothing for none)."""
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        get = operator.attrgetter(names[0])
        return lambda obj: (get(obj),)
    return operator.attrgetter(*names)


def _converter(hint: Any) -> Callable[[Any], Any] | None:
    base = getattr(hint, "__origin__", hint) if hasattr(hint, "__metadata__") else hint
    if base is uuid.UUID:
        return str
    if isinstance(base, type) and issubclass(base, IntEnum):
        return int
    if isinstance(base, type) and issubclass(base, Wire):
        return base.to_wire
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return msgspec.to_builtins
    return None


# --------------------------------------------------------------------- the base


class _WireMeta(msgspec.StructMeta):
    """Lets ``Task("web", "cube/echo")`` name its leading fields positionally while the
    fields keep Go's order (msgspec orders positional fields first, and Go's first
    field is ``ID``); and keeps each class's :class:`_Plan`, made on first use (when
    every type its fields name is defined)."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kwargs: Any) -> Any:
        kwargs.setdefault("kw_only", True)  # msgspec does not pass it on to subclasses
        return super().__new__(mcls, name, bases, ns, **kwargs)

    @property
    def __wire__(cls) -> _Plan:
        plan = cls.__dict__.get("_wire_plan")
        if plan is None:
            plan = _Plan(cls)  # type: ignore[arg-type]
            type.__setattr__(cls, "_wire_plan", plan)
        return plan

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if args:
            names = cls.__positional__  # type: ignore[attr-defined]
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__} takes at most {len(names)} positional arguments")
            kwargs.update(zip(names, args, strict=False))
        return super().__call__(**kwargs)


class Wire(
    msgspec.Struct,
    metaclass=_WireMeta,
    kw_only=True,
    forbid_unknown_fields=True,
    rename=go_name,
):
    """Base of every wire type. Subclasses declare fields; the rest is derived."""

    __positional__: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        type(self).__wire__.check(self)

    def to_wire(self) -> dict[str, Any]:
        """The JSON value, in Go's field order, with Go's names and zero values; the
        fields that are ours are left out while they hold their defaults."""
        return type(self).__wire__.to_wire(self)

    @classmethod
    def from_wire(cls, data: Any, where: str | None = None) -> Self:
        """Parse and validate JSON data (as ``json.loads`` returns it)."""
        return decode(cls, data, where or cls.__name__)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (stored values are never shared objects)."""
        return msgspec.structs.replace(self, **changes)


# --------------------------------------------------------------------- encoding

_ENCODER = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    """JSON bytes of a wire value, a list of them, or plain JSON data."""
    if isinstance(value, Wire):
        return _json(value.to_wire())
    if isinstance(value, list):
        return b"[" + b",".join(encode(item) for item in value) + b"]"
    return _json(value)


def _json(data: Any) -> bytes:
    """msgspec's JSON; for text holding an unpaired surrogate (which only a store
    written by an older Cube can hold), the standard library's, which writes it as an
    escape instead of failing the whole answer."""
    try:
        return _ENCODER.encode(data)
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":")).encode()


# --------------------------------------------------------------------- decoding

T = typing.TypeVar("T")


def decode(cls: type[T], data: Any, where: str) -> T:
    """``data`` as a ``cls``, or :class:`ValidationError` naming the field."""
    try:
        return msgspec.convert(data, cls, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        if not str(exc).startswith("Object contains unknown field") or not isinstance(data, dict):
            raise _translate(cls, data, where, str(exc)) from None
    data = canonical_keys(cls, data, where)
    try:
        return msgspec.convert(data, cls, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise _translate(cls, data, where, str(exc)) from None


def decode_json(cls: type[T], text: str | bytes, where: str) -> T:
    """JSON text as a ``cls``: straight from the text when its keys are spelled as
    Cube writes them (stored values, answers), else by way of :func:`decode` (which
    also reads what msgspec's parser refuses and the standard one takes, such as an
    escaped unpaired surrogate an older Cube stored)."""
    try:
        return msgspec.json.decode(text, type=cls, dec_hook=_dec_hook)
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationError(where, f"malformed JSON: {exc}") from None
    return decode(cls, data, where)


def _dec_hook(cls: type, value: Any) -> Any:
    """Field types msgspec does not know decode themselves (see cube.fields)."""
    if value is None:
        return cls()  # an empty map: Go writes null
    return cls.__from_wire__(value)  # type: ignore[attr-defined]


def canonical_keys(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` with its keys spelled as ``cls`` declares them (matched regardless of
    case, as Go's decoder does), nested wire values included. Unknown or repeated keys
    are a :class:`ValidationError`."""
    plan: _Plan = cls.__wire__  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = plan.names.get(key.lower()) if isinstance(key, str) else None
        if name is None:
            known = ", ".join(sorted(plan.names.values()))
            raise ValidationError(f"{where}.{key}", f"unknown field; known fields are {known}")
        if name in out:
            raise ValidationError(f"{where}.{name}", "given twice")
        inner = wire_class(plan.types[name])
        if inner is not None and isinstance(value, dict):
            value = canonical_keys(inner, value, f"{where}.{name}")
        out[name] = value
    return out


def wire_class(hint: Any) -> type[Wire] | None:
    """The wire type a field holds (itself, optional, or annotated), if any."""
    base = getattr(hint, "__origin__", hint) if hasattr(hint, "__metadata__") else hint
    for candidate in (base, *typing.get_args(base)):
        if isinstance(candidate, type) and issubclass(candidate, Wire):
            return candidate
    return None


# ------------------------------------------------------- readable error messages

_AT = re.compile(r"^(?P<reason>.*?)(?: - at `(?P<path>[^`]*)`(?: in `(?P<outer>[^`]*)`)?)?$", re.S)
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+|\.\.\.)\]")
_TYPES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "object": "a JSON object",
    "array": "a list",
    "null": "null",
    "uuid": "a UUID string",
    "datetime": "an RFC 3339 time string",
}


def _translate(cls: type, data: Any, where: str, message: str) -> ValidationError:
    """A msgspec message (``Expected `int` >= 0 - at `$.Task.Memory```) as a
    :class:`ValidationError` with our field path and a reason a person can act on."""
    match = _AT.match(message)
    assert match is not None  # the pattern matches any text
    reason, path = match["reason"], match["outer"] or match["path"] or "$"
    if match["outer"]:
        reason = f"a key {reason[0].lower()}{reason[1:]}"
    extra = ""
    if reason.startswith((".", "[")):  # from a field type's own check
        extra, _, reason = reason.partition(": ")
    field = where + path[1:] + extra
    if reason.startswith("Object contains unknown field"):
        return ValidationError(f"{field}.{reason.split('`')[1]}", "unknown field")
    if reason.startswith("Object missing required field"):
        name = reason.split("`")[1]
        hint, _ = _field_hint(cls, f"{path}.{name}")
        return ValidationError(f"{field}.{name}", hint.get("empty", "is required"))
    hints, value = _field_hint(cls, path, data)
    return ValidationError(field, _reason(reason, hints, value))


def _reason(reason: str, hints: dict[str, str], value: Any) -> str:
    shown = repr(value) if value is not _MISSING else ""
    if reason.startswith("Expected `str` of length >= 1"):
        return hints.get("empty", "must not be empty")
    if reason.startswith("Expected `str` of length <="):
        return f"longer than {reason.split()[-1]} characters"
    if reason.startswith("Expected `str` matching regex"):
        return f"{shown} {hints.get('mismatch', 'is not in the expected form')}".strip()
    if reason.startswith(("Expected `int` >=", "Expected `float` >=", "Expected `float` <=")):
        if "range" in hints:
            return f"{hints['range']}, got {shown}"
        if ">=" in reason:
            return f"must not be negative, got {shown}"
    if reason.startswith(("Expected `int` <=", "Integer value out of range")):
        limit = reason.split()[-1] if "<=" in reason else "the largest allowed"
        return f"must be at most {limit}, got {shown}"
    if reason.startswith("Invalid enum value"):
        return hints.get("enum", "{value} is not one of the allowed values").format(value=shown)
    if reason == "Invalid UUID":
        return f"{shown} is not a UUID"
    if reason.startswith("Expected `datetime` with a timezone"):
        return f"{shown} {hints.get('zone', 'has no time zone')}"
    if reason.startswith("Invalid RFC3339"):
        return f"{shown} is not an RFC 3339 time like '0001-01-01T00:00:00Z'"
    typed = re.match(r"Expected `([a-z]+)[^`]*`(?: \| null)?, got `(\w+)`", reason)
    if typed:
        wanted = hints.get("type", f"expected {_TYPES.get(typed[1], typed[1])}")
        return f"{wanted}, got {typed[2]}"
    return reason


_MISSING = object()


def _field_hint(cls: type, path: str, data: Any = _MISSING) -> tuple[dict[str, str], Any]:
    """The hints of the field at a msgspec path, and the value given there."""
    hint: Any = cls
    value = data
    for name, index in _SEGMENT.findall(path):
        if name:
            inner = wire_class(hint)
            plan = inner.__wire__ if inner is not None else None
            hint = plan.types.get(name) if plan is not None else None
            value = value.get(name, _MISSING) if isinstance(value, dict) else _MISSING
        elif index.isdigit() and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            value = _MISSING
    rule = rule_of(hint)
    return (rule.hints if rule is not None else {}), value


# ------------------------------------------------------------ strict variants


def strict_variant(cls: type[T], name: str) -> type[T]:
    """A copy of the wire type whose fields have their :class:`Rule` ``strict`` types
    (what a client may submit), nested wire types included. Decoding into it checks
    the stricter rules in C; the result converts back with :func:`from_strict`."""
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": name}
    declared = hints_of(cls)
    for f in msgspec.structs.fields(cls):  # type: ignore[arg-type]
        hint = declared[f.name]
        rule = rule_of(hint)
        if rule is not None and rule.strict is not None:
            hint = rule.strict
        elif (inner := wire_class(hint)) is not None and hasattr(inner, "__strict__"):
            extra = getattr(hint, "__metadata__", ())
            hint = Annotated[(inner.__strict__, *extra)] if extra else inner.__strict__
        annotations[f.name] = hint
        if f.default_factory is not msgspec.NODEFAULT:
            namespace[f.name] = msgspec.field(default_factory=f.default_factory)
        elif f.default is not msgspec.NODEFAULT:
            namespace[f.name] = f.default
    namespace["__annotations__"] = annotations
    variant = type(cls)(name, (Wire,), namespace)
    variant.__doc__ = f"{cls.__name__} as a client may submit it (stricter rules)."
    return variant  # type: ignore[return-value]


@functools.cache
def _fields(cls: type) -> tuple[Any, ...]:
    """A struct type's fields, looked up once (msgspec reads its annotations anew on
    every call, which showed in every submission's parsing)."""
    return msgspec.structs.fields(cls)


def from_strict(cls: type[T], value: Any) -> T:
    """A value decoded with a strict variant, as an instance of the real type."""
    types = cls.__wire__.types  # type: ignore[attr-defined]
    out = {}
    for f in _fields(type(value)):
        item = getattr(value, f.name)
        target = wire_class(types[f.encode_name])
        out[f.name] = from_strict(target, item) if target is not None and item is not None else item
    return cls(**out)
