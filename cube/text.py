"""Showing text that came from outside: never a raw control character.

A task's name, reason or health check is shown in terminals, logs and notebooks. Text
that holds an escape sequence, a carriage return, a bidirectional override or an
unpaired surrogate can rewrite a terminal, forge a log line, reorder what a reader sees,
or crash the printing of everything else. :func:`printable` writes those characters as
escapes instead (``\\x1b``, ``\\u202e``), and :class:`SafeFormatter` does it to every log
message. Submissions refuse such characters (:mod:`cube.fields`); this is for whatever
still gets through: values stored by an older Cube, a worker's reasons, request paths.
"""

from __future__ import annotations

import logging


def printable(text: object, keep: str = "") -> str:
    """``text`` with every character that is not printable (and not in ``keep``, say
    ``"\\n"`` for multi-line output) written as a Python escape."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char in keep else _escape(char) for char in text)


def _escape(char: str) -> str:
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")


class SafeFormatter(logging.Formatter):
    """A log formatter whose messages never hold raw control characters, so a value
    logged from a request cannot start a line of its own. (Tracebacks keep their
    line breaks.)"""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))
