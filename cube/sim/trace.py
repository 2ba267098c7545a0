"""CSV traces: ``arrival,duration,cpu,memory,disk``, one task per line.

Units are seconds, seconds, cores, bytes, bytes. Columns may come in any order; rows
may too (tasks are sorted by arrival on loading). A bad value is reported by file, line
and column, because a trace of a million lines is hard to eyeball.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

COLUMNS = ("arrival", "duration", "cpu", "memory", "disk")
WHOLE = {"memory", "disk"}  # bytes: whole numbers


class TraceError(ValueError):
    """A trace that cannot be loaded, with where and why."""


def read_trace(path: str | Path) -> list[np.ndarray]:
    """The trace's columns as arrays, in :data:`COLUMNS` order."""
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = [name.strip() for name in next(rows, [])]
        _check_header(path, header)
        values: list[list[float]] = [[] for _ in COLUMNS]
        slot = [COLUMNS.index(name) for name in header]
        for row in rows:
            if not row or not "".join(row).strip():
                continue
            where = f"{path} line {rows.line_num}"
            if len(row) != len(header):
                raise TraceError(f"{where}: expected {len(header)} values, found {len(row)}")
            for name, text, i in zip(header, row, slot, strict=True):
                values[i].append(_number(text, f"{where}, column {name!r}", name in WHOLE))
    if not values[0]:
        raise TraceError(f"{path}: no tasks after the header")
    return [
        np.array(v, dtype=np.int64 if n in WHOLE else float)
        for n, v in zip(COLUMNS, values, strict=True)
    ]


def write_trace(path: str | Path, columns: Sequence[np.ndarray]) -> None:
    """Write columns (in :data:`COLUMNS` order); floats are written to load back exactly."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(COLUMNS)
        out.writerows(zip(*(c.tolist() for c in columns), strict=True))


def _check_header(path: str | Path, header: list[str]) -> None:
    missing = [c for c in COLUMNS if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    doubled = sorted({c for c in header if header.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(map(repr, missing))}")
    if extra:
        problems.append(f"unexpected column(s) {', '.join(map(repr, extra))}")
    if doubled:
        problems.append(f"repeated column(s) {', '.join(map(repr, doubled))}")
    if problems:
        raise TraceError(f"{path} line 1: {'; '.join(problems)} (expected {','.join(COLUMNS)})")


def _number(text: str, where: str, whole: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"{where}: {text.strip()!r} is not a finite number")
    if value < 0:
        raise TraceError(f"{where}: {text.strip()} is negative")
    if whole and value != int(value):
        raise TraceError(f"{where}: {text.strip()} is not a whole number of bytes")
    return value
