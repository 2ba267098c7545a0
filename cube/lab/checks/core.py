"""What every checker shares: collecting problems into a verdict, calling the learner's
code without letting its mistakes escape, a quiet log, and a deadline-bound wait.

A checker reads like the story it tells::

    with Check("02 · the state machine", hints=(nudge, more, answer)) as check:
        table = check.call(transitions, "transitions()")  # stops the check on a stub
        if State.Pending in table[State.Completed]:
            check.fail("Completed may go back to Pending", "nothing leaves Completed")
    return check.verdict("the worker lives by your table")

A call to the learner's piece that raises ends the check (:class:`Stop`) with the
reason in the verdict: a stub's NotImplementedError reads "not written yet", anything
else names the exception. Problems found by comparing results do not end the check, so
one run can report several.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from cube.lab.progress import Progress
from cube.lab.timeline import Timeline
from cube.lab.verdict import Verdict

T = TypeVar("T")


class Stop(Exception):
    """Ends a check early; the reason is already among the problems."""


class Check:
    """Problems, notes and hints for one exercise, and the timeline of its run.

    ``hints`` go from a nudge to the answer; a problem's own hint (given to
    :meth:`fail` with the first problem) goes in front of them, as the nudge that fits
    the mistake."""

    def __init__(self, exercise: str, hints: Sequence[str] | str = (), title: str = "") -> None:
        self.exercise, self.title = exercise, title
        self.hints = [hints] if isinstance(hints, str) else list(hints)
        self.problems: list[str] = []
        self.environment = False  # the check could not run: the cluster, not the code
        self.progress = Progress(exercise)
        self.notes: list[str] = []
        self.timeline = Timeline(title)
        self.stub = False

    def __enter__(self) -> Check:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        if kind is not None and kind is not Stop:
            self.progress.done()  # the check itself broke: no verdict will end the line
        return kind is Stop

    def fail(self, problem: str, hint: str = "") -> None:
        """Record a problem (and the hint for it, when it is the first one)."""
        self.problems.append(problem)
        if hint and len(self.problems) == 1 and hint not in self.hints:
            self.hints.insert(0, hint)

    def stop(self, problem: str, hint: str = "") -> None:
        self.fail(problem, hint)
        raise Stop

    def say(self, step: str) -> None:
        """Show the step the check is on (a line updated in place, under the cell)."""
        self.progress.say(step)

    def ready(self, cluster: Any) -> None:
        """Stop, saying why, when ``cluster`` cannot be checked against: stopped, a
        component paused or down. That is the environment, not the learner's code."""
        why = unready(cluster)
        if why:
            self.environment = True
            self.stop(why)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def require(self, condition: bool, problem: str, hint: str = "") -> None:
        """Stop the check unless ``condition`` holds."""
        if not condition:
            self.stop(problem, hint)

    def call(self, piece: Callable[..., T], what: str, *args: Any, **kwargs: Any) -> T:
        """Call the learner's ``piece``; a stub or an error ends the check, saying so."""
        try:
            return piece(*args, **kwargs)
        except NotImplementedError:
            self.stub = True
            self.stop(
                f"{what} is still the stub: it raised NotImplementedError",
                "" if self.hints else "replace the `raise NotImplementedError` line with your code",
            )
        except Stop:
            raise
        except Exception as exc:
            self.stop(f"{what} raised {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")  # pragma: no cover

    def verdict(self, passed: str, failed: str = "", figure: Any = None) -> Verdict:
        """The verdict: ``passed`` when no problem was found, else ``failed`` (or a
        count of the problems). The picture is ``figure`` if given, else the timeline."""
        self.progress.done()
        ok = not self.problems
        summary = passed if ok else failed or _count(self.problems)
        if self.stub:
            summary = "not written yet"
        hints = [] if self.environment else self.hints
        result = Verdict(self.exercise, ok, summary, self.problems, hints, self.notes)
        if self.environment:
            result.environment = True
            result.summary = "not checked: the cluster is not ready"
        if self.environment:
            pass  # nothing of the learner's ran to completion: no picture to read
        elif figure is not None:
            result.draw(figure)
        else:
            result.attach(self.timeline, self.title)
        return result.settle()


def unready(cluster: Any) -> str:
    """What keeps ``cluster`` from being checked against ("": nothing), with what to do."""
    if cluster is None:
        return "there is no cluster: run the cell that starts it (cluster = LocalCluster(...))"
    components = cluster.components()
    if getattr(cluster, "closed", False) or all(c.state == "stopped" for c in components):
        return (
            "the cluster is stopped (the clean-up cell at the end of the notebook stops it): "
            "run the cell that starts it again (cluster = LocalCluster(...).start(), near "
            "the top), then this check"
        )
    for component in components:
        if component.state == "paused":
            return (
                f"{component.name} is paused: resume it (its button above, or "
                f"cluster.resume({component.name!r})), then run this check again"
            )
        if component.state == "stopped":
            return (
                f"{component.name} is not running: start it again (its button above, or "
                f"cluster.restart({component.name!r})), then run this check again"
            )
    return ""


def _count(problems: list[str]) -> str:
    return "1 problem" if len(problems) == 1 else f"{len(problems)} problems"


@contextmanager
def quiet_logs(name: str = "cube") -> Iterator[list[logging.LogRecord]]:
    """Collect what Cube logs (warnings and up) during a check instead of printing it
    under the cell; the checker may quote it in the verdict."""
    logger = logging.getLogger(name)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    old = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = old


def wait_until(probe: Callable[[], T], timeout: float, interval: float = 0.05) -> T | None:
    """``probe()`` once it is truthy, or ``None`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
