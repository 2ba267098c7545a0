"""Point every ``[`Name`](../cube/file.py#L12)`` in docs/ at the line where ``Name`` is
defined now (code above it moved). Run from the project root:
``python scripts/fix-doc-refs.py docs/*.md``. A name found twice, or not at all, is
printed and left for you to fix by hand; tests/test_docs.py checks the result."""

from __future__ import annotations

import re
import sys
from pathlib import Path

LINK = re.compile(r"\[`([\w.]+)`\]\(\.\./([\w/.]+\.py)#L(\d+)\)")


def definitions(lines: list[str], name: str) -> list[int]:
    """The lines (from 1) that define ``name`` (``Class.method``: inside that class)."""
    *owner, short = name.split(".")
    found = []
    for number, text in enumerate(lines, 1):
        if not re.match(rf"\s*(async )?(def|class) {short}\b", text):
            continue
        above = [t for t in lines[: number - 1] if t.startswith("class ")]
        if not owner or (above and above[-1].startswith(f"class {owner[0]}")):
            found.append(number)
    return found


def fix(doc: Path) -> None:
    def point(match: re.Match[str]) -> str:
        name, path = match.group(1), match.group(2)
        found = definitions(Path(path).read_text().splitlines(), name)
        if len(found) != 1:
            print(f"{doc}: {name} in {path} is defined on lines {found}: fix it by hand")
            return match.group(0)
        return f"[`{name}`](../{path}#L{found[0]})"

    doc.write_text(LINK.sub(point, doc.read_text()))


if __name__ == "__main__":
    for each in sys.argv[1:]:
        fix(Path(each))
