"""Small display helpers for the notebooks: tables and links a learner can read.

They return plain text or HTML objects, so a notebook's stored output is stable enough
for nbval to check.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from typing import Any

from cube.task import TRANSITIONS, State, Task, TaskEvent


class HTML:
    """Rich HTML in Jupyter, readable text everywhere else."""

    def __init__(self, markup: str, text: str) -> None:
        self.markup, self.text = markup, text

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text


def transition_table() -> HTML:
    """The state machine as a from/to grid: which changes :func:`check_transition` allows."""
    states = list(State)
    head = "".join(f"<th>{s.name}</th>" for s in states)
    corner = "from \\ to"
    rows, lines = [], [f"{corner:<10} " + " ".join(f"{s.name:<9}" for s in states)]
    for src in states:
        cells = ["yes" if dst in TRANSITIONS[src] else "." for dst in states]
        tds = "".join(
            f'<td style="text-align:center;color:{"#16a34a" if c == "yes" else "#9ca3af"}">{c}</td>'
            for c in cells
        )
        rows.append(f"<tr><th>{src.name}</th>{tds}</tr>")
        lines.append(f"{src.name:<10} " + " ".join(f"{c:<9}" for c in cells))
    markup = f"<table><tr><th>{corner}</th>{head}</tr>{''.join(rows)}</table>"
    return HTML(markup, "\n".join(lines))


def wire(item: Task | TaskEvent | dict[str, Any] | list[Any]) -> None:
    """Print the JSON that goes over the wire, as the APIs send it."""
    data = item.to_wire() if isinstance(item, Task | TaskEvent) else item
    print(json.dumps(data, indent=2))


def tasks_table(tasks: list[Task]) -> HTML:
    """A compact table of tasks: name, state, where, restarts, reason."""
    header = ["name", "state", "worker", "restarts", "reason"]
    rows = [
        [t.name, t.state.name, t.worker or "-", str(t.restart_count), t.reason[:70]] for t in tasks
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    text = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]
    )
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    heads = "".join(f"<th>{h}</th>" for h in header)
    return HTML(f"<table><tr>{heads}</tr>{cells}</table>", text)


def api_link(url: str, path: str = "/tasks") -> HTML:
    """A link to a live API that opens from the browser: through jupyter-server-proxy
    (``/proxy/PORT/...``) when the notebook runs on a Jupyter server such as Binder's,
    and the direct address as well for a local browser."""
    port = url.rsplit(":", 1)[-1].strip("/")
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    proxied = f"{prefix.rstrip('/')}/proxy/{port}{path}"
    direct = f"{url}{path}"
    markup = (
        f'<a href="{html.escape(proxied)}" target="_blank">{html.escape(proxied)}</a> '
        f'(through the notebook server) or <a href="{html.escape(direct)}" target="_blank">'
        f"{html.escape(direct)}</a> (directly)"
    )
    return HTML(markup, f"{proxied} (through the notebook server) or {direct} (directly)")


def cli(*args: str, env: dict[str, str] | None = None) -> int:
    """Run ``cube ARGS`` as a learner would in a terminal, and print what it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "cube", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    print((done.stdout + done.stderr).rstrip())
    return done.returncode
