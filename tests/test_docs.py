"""The docs point at the code: every ``[`Name`](../cube/file.py#L12)`` in ``docs/``
names a ``def`` or ``class`` that is on that very line (and, for ``Class.method``,
inside that class), so the read-me-first cannot drift from the code it traces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[`([\w.]+)`\]\(\.\./([\w/.]+\.py)#L(\d+)\)")
DOCS = sorted((ROOT / "docs").glob("*.md"))


def references() -> list[tuple[str, str, str, int]]:
    found = []
    for doc in DOCS:
        for name, path, line in LINK.findall(doc.read_text()):
            found.append((doc.name, name, path, int(line)))
    return found


def test_the_architecture_traces_the_request_through_many_hops() -> None:
    hops = [r for r in references() if r[0] == "ARCHITECTURE.md"]
    assert len(hops) >= 30
    assert {"Manager.submit", "Control.reconcile_one", "Worker.submit"} <= {r[1] for r in hops}


@pytest.mark.parametrize(("doc", "name", "path", "line"), references())
def test_a_reference_names_what_is_on_its_line(doc: str, name: str, path: str, line: int) -> None:
    lines = (ROOT / path).read_text().splitlines()
    assert 0 < line <= len(lines), f"{doc}: {path} has no line {line}"
    *owner, short = name.split(".")
    text = lines[line - 1]
    assert re.match(rf"\s*(async )?(def|class) {short}\b", text), (
        f"{doc}: {path}:{line} is {text.strip()!r}, not {short} "
        "(python scripts/fix-doc-refs.py docs/*.md points the links at the lines again)"
    )
    if owner:
        above = [t for t in lines[: line - 1] if t.startswith("class ")]
        assert above and above[-1].startswith(f"class {owner[0]}"), (
            f"{doc}: {path}:{line} is not in class {owner[0]}"
        )
