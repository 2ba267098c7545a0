"""ipywidgets that drive a live Cube: submit tasks, watch and stop them, see nodes, restart
or kill components, read the event log.

Every widget talks to the APIs through :mod:`cube.client`, so a notebook can point the
same task table at a worker (chapter 5) or at the manager. Nothing here starts a thread:
callbacks run in the kernel when a button is clicked, and auto-refresh is a coroutine
on the kernel's own asyncio loop. Errors are shown in the widget, never raised into a
cell from the background. Every widget works headless: ``button.click()`` in a test
runs the same code as a click in JupyterLab.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from cube.client import Client, CubeError, ManagerClient
from cube.cluster import LocalCluster
from cube.node import format_size
from cube.task import State, Task

STATE_COLOURS = {
    State.Pending: "#6b7280",
    State.Scheduled: "#2563eb",
    State.Running: "#16a34a",
    State.Completed: "#374151",
    State.Failed: "#dc2626",
}
IMAGES = ["cube/echo", "cube/echo:bad-exit", "cube/busybox"]


def badge(text: str, colour: str) -> str:
    return (
        f'<span style="background:{colour};color:white;border-radius:4px;'
        f'padding:1px 6px;font-size:90%">{html.escape(text)}</span>'
    )


def state_badge(state: State) -> str:
    return badge(state.name, STATE_COLOURS[state])


class _Panel(w.VBox):
    """A titled box with a message line for errors and results."""

    def __init__(self, title: str, children: list[w.Widget]) -> None:
        self.message = w.HTML()
        super().__init__([w.HTML(f"<b>{html.escape(title)}</b>"), *children, self.message])

    def say(self, text: str, ok: bool = True) -> None:
        colour = "#166534" if ok else "#b91c1c"
        self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def attempt(self, action: Callable[[], Any], done: str = "") -> Any:
        """Run ``action``; show its error instead of raising it out of a click."""
        try:
            result = action()
        except CubeError as exc:
            self.say(f"{type(exc).__name__}: {exc.message}", ok=False)
            return None
        if done:
            self.say(done)
        return result


class TaskForm(_Panel):
    """Fill in a task and submit it (to a manager or directly to a worker)."""

    def __init__(
        self,
        client: Client,
        on_submit: Callable[[Task], None] | None = None,
        image: str = "cube/echo",
    ) -> None:
        self.client, self.on_submit = client, on_submit
        label = {"style": {"description_width": "100px"}}  # room for "Health check"
        self.name = w.Text(value="web", description="Name", **label)
        options = IMAGES if image in IMAGES else [image, *IMAGES]
        self.image = w.Combobox(value=image, options=options, description="Image", **label)
        self.health_check = w.Text(value="/health", description="Health check", **label)
        self.cpu = w.BoundedFloatText(
            value=0, min=0, max=64, step=0.25, description="CPU cores", **label
        )
        self.memory = w.BoundedIntText(
            value=0, min=0, max=1 << 20, description="Memory MiB", **label
        )
        self.submit = w.Button(description="Submit", button_style="primary", icon="play")
        self.submit.on_click(lambda _: self.send())
        fields = [self.name, self.image, self.health_check, self.cpu, self.memory, self.submit]
        super().__init__("New task", fields)

    def spec(self) -> dict[str, Any]:
        return {
            "Name": self.name.value,
            "Image": self.image.value,
            "HealthCheck": self.health_check.value,
            "Cpu": self.cpu.value,
            "Memory": self.memory.value * (1 << 20),
        }

    def send(self) -> Task | None:
        task = self.attempt(lambda: self.client.submit(self.spec()))
        if task is not None:
            self.say(f"accepted {task.name} as {str(task.id)[:8]} ({task.state.name})")
            if self.on_submit:
                self.on_submit(task)
        return task


class TaskTable(_Panel):
    """Every task with its state in colour, where it runs, and a Stop button."""

    COLUMNS = ("ID", "Name", "State", "Worker", "Ports", "Restarts", "Reason", "")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.grid = w.GridBox(
            layout=w.Layout(grid_template_columns="repeat(8, auto)", grid_gap="2px 12px")
        )
        self.stop_buttons: dict[str, w.Button] = {}
        self.tasks: list[Task] = []
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        super().__init__("Tasks", [self.refresh_button, self.grid])
        self.refresh()

    def refresh(self) -> None:
        tasks = self.attempt(self.client.tasks)
        if tasks is None:
            return
        self.tasks = tasks
        cells: list[w.Widget] = [w.HTML(f"<b>{c}</b>") for c in self.COLUMNS]
        self.stop_buttons = {}
        for task in tasks:
            texts = [html.escape(v) for v in self._texts(task)]
            texts.insert(2, state_badge(task.state))
            cells += [w.HTML(text) for text in texts]
            cells.append(self._stop_button(task))
        self.grid.children = cells
        if not tasks:
            self.say("no tasks yet")
        elif "no tasks yet" in self.message.value:
            self.message.value = ""

    def row(self, name: str) -> Task | None:
        """The task called ``name`` as last shown (for checks in notebooks and tests)."""
        return next((t for t in reversed(self.tasks) if t.name == name), None)

    @staticmethod
    def _texts(task: Task) -> list[str]:
        port = task.host_port()
        return [
            str(task.id)[:8],
            task.name,
            task.worker or "-",
            str(port) if port else "-",
            str(task.restart_count),
            task.reason[:60],
        ]

    def _stop_button(self, task: Task) -> w.Widget:
        if task.state in (State.Completed,):
            return w.HTML("")
        button = w.Button(
            description="Stop", button_style="danger", icon="stop", layout=w.Layout(width="80px")
        )
        button.on_click(lambda _, t=task: self.stop(t))
        self.stop_buttons[str(task.id)] = button
        return button

    def stop(self, task: Task) -> None:
        self.attempt(lambda: self.client.stop(task.id), f"asked to stop {task.name}")
        self.refresh()


class NodePanel(_Panel):
    """Each worker: up or down, memory and CPU use as bars, and its task count."""

    def __init__(self, client: ManagerClient) -> None:
        self.client = client
        self.rows = w.VBox()
        super().__init__("Nodes", [self.rows])
        self.refresh()

    def refresh(self) -> None:
        nodes = self.attempt(self.client.nodes)
        if nodes is None:
            return
        self.rows.children = [self._row(n) for n in nodes]

    @staticmethod
    def _row(node: dict[str, Any]) -> w.Widget:
        up = node["State"] == "up"
        colour = "#16a34a" if up else "#dc2626" if node["State"] == "down" else "#6b7280"
        total = max(node["Memory"], 1)
        memory = w.FloatProgress(
            value=node["MemoryUsed"] / total, min=0, max=1, description="memory"
        )
        cpu = w.FloatProgress(value=node["CpuPercent"] / 100, min=0, max=1, description="cpu")
        tasks = node["TaskCount"]
        label = w.HTML(
            f"{badge(node['State'], colour)} <code>{html.escape(node['Name'])}</code> "
            f"{tasks} task{'' if tasks == 1 else 's'}, {format_size(node['MemoryUsed'] * 1024)} of "
            f"{format_size(node['Memory'] * 1024)}, {node['CpuPercent']:.0f}% CPU"
        )
        return w.VBox([label, w.HBox([memory, cpu])])


class EventLog(_Panel):
    """The manager's event history, newest first."""

    def __init__(self, client: ManagerClient, limit: int = 12) -> None:
        self.client, self.limit = client, limit
        self.table = w.HTML()
        super().__init__("Events", [self.table])
        self.refresh()

    def refresh(self) -> None:
        events = self.attempt(self.client.events)
        if events is None:
            return
        rows = "".join(
            f"<tr><td>{e.timestamp:%H:%M:%S}</td><td>{html.escape(e.task.name)}</td>"
            f"<td>{'stop' if e.state is State.Completed else 'run'}</td>"
            f"<td>{state_badge(e.task.state)}</td><td>{e.task.restart_count}</td></tr>"
            for e in events[: self.limit]
            if e.timestamp
        )
        head = "<tr><th>time</th><th>task</th><th>asked</th><th>task was</th><th>restarts</th></tr>"
        self.table.value = f'<table style="border-spacing:10px 2px">{head}{rows}</table>'


class ComponentControls(_Panel):
    """Restart, kill, pause or resume the manager and each worker of a LocalCluster."""

    ACTIONS = ("restart", "kill", "pause", "resume")

    def __init__(self, cluster: LocalCluster, on_change: Callable[[], None] | None = None) -> None:
        self.cluster, self.on_change = cluster, on_change
        self.buttons: dict[tuple[str, str], w.Button] = {}
        self.labels: dict[str, w.HTML] = {}
        rows = [self._row(c.name) for c in (cluster.manager, *cluster.workers.values())]
        super().__init__("Components", rows)
        self.refresh()

    def _row(self, name: str) -> w.Widget:
        self.labels[name] = w.HTML(layout=w.Layout(width="260px"))
        buttons = []
        for action in self.ACTIONS:
            button = w.Button(description=action.capitalize(), layout=w.Layout(width="90px"))
            button.on_click(lambda _, n=name, a=action: self.act(n, a))
            self.buttons[(name, action)] = button
            buttons.append(button)
        return w.HBox([self.labels[name], *buttons])

    def act(self, name: str, action: str) -> None:
        try:
            getattr(self.cluster, action)(name)
        except (RuntimeError, KeyError) as exc:
            self.say(str(exc), ok=False)
        else:
            self.say(f"{action} {name}: done")
        self.refresh()
        if self.on_change:
            self.on_change()

    def refresh(self) -> None:
        colours = {"running": "#16a34a", "paused": "#d97706", "stopped": "#dc2626"}
        for name, label in self.labels.items():
            component = self.cluster.component(name)
            state = badge(component.state, colours[component.state])
            label.value = f"{state} <code>{name}</code> {component.url}"


class Dashboard(w.VBox):
    """Everything at once for a LocalCluster: form, tasks, nodes, components, events,
    with a Refresh button and an optional auto-refresh on the kernel's event loop."""

    def __init__(self, cluster: LocalCluster, interval: float = 1.0) -> None:
        client = cluster.client
        self.interval = interval
        self.tasks = TaskTable(client)
        self.form = TaskForm(client, on_submit=lambda _: self.refresh(), image=cluster.image)
        self.nodes = NodePanel(client)
        self.events = EventLog(client)
        self.controls = ComponentControls(cluster, on_change=self.refresh)
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.auto = w.ToggleButton(description="Auto-refresh", icon="clock-o")
        self.auto.observe(self._toggle, "value")
        self._job: asyncio.Task[None] | None = None
        top = w.HBox([self.form, self.nodes])
        bottom = w.HBox([self.controls, self.events])
        super().__init__([w.HBox([self.refresh_button, self.auto]), top, self.tasks, bottom])

    def refresh(self) -> None:
        for part in (self.tasks, self.nodes, self.events, self.controls):
            part.refresh()

    def _toggle(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._job = asyncio.get_event_loop().create_task(self._tick())
        elif self._job is not None:
            self._job.cancel()
            self._job = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.refresh()
