"""A learner's scores: the last verdict of each exercise, kept beside the notebooks.

Every check's verdict is written down as it is given (:meth:`Verdict.settle`), one small
JSON file per exercise in ``.cube-progress/`` in the folder the kernel runs in (the
notebooks' folder), so notebook 00 can show which exercises pass, and a fresh clone
starts with none. One file per exercise means two notebooks checking at once never
overwrite each other's answer. ``CUBE_PROGRESS`` names another folder (the tests use a
scratch one, so that their runs leave nothing in the repository).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cube.lab.verdict import Verdict

PROGRESS_ENV = "CUBE_PROGRESS"
FOLDER = ".cube-progress"
CHAPTER = re.compile(r"^(\d\d)\b")


@dataclass(frozen=True)
class Attempt:
    """The last verdict of one exercise."""

    exercise: str
    passed: bool
    summary: str
    at: str  # RFC 3339, UTC

    @property
    def chapter(self) -> str:
        """``"07"`` for ``"07 · take turns"``: exercises are named after their chapter."""
        found = CHAPTER.match(self.exercise)
        return found.group(1) if found else self.exercise


def folder() -> Path:
    return Path(os.environ.get(PROGRESS_ENV) or Path.cwd() / FOLDER)


def record(verdict: Verdict) -> None:
    """Write down ``verdict`` as its exercise's last attempt; a folder that cannot be
    written (a read-only copy) only means no progress is kept."""
    attempt = Attempt(verdict.exercise, verdict.passed, verdict.summary, _now())
    with contextlib.suppress(OSError):
        where = folder()
        where.mkdir(parents=True, exist_ok=True)
        _write_atomically(where / f"{attempt.chapter}.json", json.dumps(asdict(attempt)))


def attempts() -> dict[str, Attempt]:
    """The last attempt of each exercise, by chapter ("00" to "14")."""
    found = {}
    for path in sorted(folder().glob("*.json")) if folder().is_dir() else []:
        with contextlib.suppress(OSError, ValueError, TypeError):
            attempt = Attempt(**json.loads(path.read_text()))
            found[attempt.chapter] = attempt
    return found


def chapters(notebooks: Path) -> dict[str, str]:
    """Each chapter notebook in ``notebooks`` by number: ``{"07": "07-the-manager"}``."""
    return {p.name[:2]: p.stem for p in sorted(notebooks.glob("[0-9][0-9]-*.ipynb"))}


@dataclass
class Progress:
    """What notebook 00 shows: each chapter and its last verdict, if any."""

    chapters: dict[str, str]
    attempts: dict[str, Attempt]

    @property
    def passed(self) -> list[str]:
        return [c for c, a in self.attempts.items() if a.passed and c in self.chapters]

    def __str__(self) -> str:
        lines = [f"{len(self.passed)} of {len(self.chapters)} exercises pass"]
        for chapter, title in self.chapters.items():
            lines.append(f"  {title}: {self._word(chapter)}")
        return "\n".join(lines)

    __repr__ = __str__

    def _word(self, chapter: str) -> str:
        attempt = self.attempts.get(chapter)
        if attempt is None:
            return "not checked yet"
        return f"{'passes' if attempt.passed else 'not yet'} ({attempt.summary})"

    def _repr_html_(self) -> str:
        rows = []
        for chapter, title in self.chapters.items():
            attempt = self.attempts.get(chapter)
            mark = "·" if attempt is None else ("✓" if attempt.passed else "✗")
            colour = "#9ca3af" if attempt is None else ("#166534" if attempt.passed else "#b91c1c")
            rows.append(
                f'<tr><td style="color:{colour};text-align:center">{mark}</td>'
                f'<td><a href="{html.escape(title)}.ipynb">{html.escape(title)}</a></td>'
                f"<td>{html.escape(self._word(chapter))}</td></tr>"
            )
        head = f"<b>{len(self.passed)} of {len(self.chapters)} exercises pass</b>"
        return f'{head}<table class="cube-progress">{"".join(rows)}</table>'


def progress(notebooks: Path | None = None) -> Progress:
    """The learner's progress over the chapter notebooks in ``notebooks`` (this folder)."""
    return Progress(chapters(notebooks or Path.cwd()), attempts())


def _write_atomically(path: Path, text: str) -> None:
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
