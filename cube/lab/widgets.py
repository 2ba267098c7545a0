"""ipywidgets that drive a live Cube: submit tasks, watch and stop them, see nodes, restart
or kill components, read the event log.

Every widget talks to the APIs through :mod:`cube.client`, so a notebook can point the
same task table at a worker (chapter 5) or at the manager.

Widgets never block the kernel. A click only queues the call on the panel's own
background thread (:class:`~cube.lab.background.Lane`) and returns; the panel updates
itself when the answer comes. Calls use a client with a one-second timeout, and given
a cluster, a panel does not even ask a manager that is paused or stopped: it says so
and keeps showing what it last heard. Messages from a call clear once a later call
succeeds. Kept current, the task table, the nodes and the event log *watch* the manager
(blocking queries: an answer the moment something changes, nothing asked in between),
each on its own thread; the component controls read the process table on a timer. Code
(and tests) that click a button and then want the outcome call the panel's
:meth:`~_Panel.wait` first.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import ipywidgets as w

from cube.client import Client, CubeError, ManagerClient, Unreachable
from cube.cluster import LocalCluster
from cube.etcd import LocalEtcd
from cube.lab.background import Every, Follow, Lane
from cube.lab.managers import Look, looks
from cube.lab.view import ClusterView
from cube.node import format_size
from cube.task import State, Task, TaskEvent

STATE_COLOURS = {
    State.Pending: "#6b7280",
    State.Scheduled: "#2563eb",
    State.Running: "#16a34a",
    State.Completed: "#374151",
    State.Failed: "#dc2626",
}
COMPONENT_COLOURS = {"running": "#16a34a", "paused": "#d97706", "stopped": "#dc2626"}
IMAGES = ["cube/echo", "cube/echo:bad-exit", "cube/busybox"]
CALL_TIMEOUT = 1.0  # seconds a widget waits for an answer before saying there was none
WATCH_WAIT = 5.0  # seconds a watch waits for a change (so a paused manager holds one <6 s)
HOLD = 4.0  # seconds a message stays before a successful refresh may clear it


def badge(text: str, colour: str) -> str:
    return (
        f'<span style="background:{colour};color:white;border-radius:4px;'
        f'padding:1px 6px;font-size:90%">{html.escape(text)}</span>'
    )


def state_badge(state: State) -> str:
    return badge(state.name, STATE_COLOURS[state])


class _Panel(w.VBox):
    """A titled box with a message line, and a background lane for its calls."""

    def __init__(
        self, title: str, children: list[w.Widget], view: ClusterView | None = None
    ) -> None:
        self.message = w.HTML()
        self.view = view
        self._lane = Lane(f"cube-{title.lower()}")
        self._said_at, self._said_error = 0.0, False
        self._said_unreachable = False  # the last message says the manager did not answer
        self._auto: Every | Follow | None = None
        self._showing, self._shown = threading.Lock(), 0
        super().__init__([w.HTML(f"<b>{html.escape(title)}</b>"), *children, self.message])

    def say(self, text: str, ok: bool = True, unreachable: bool = False) -> None:
        colour = "#166534" if ok else "#b91c1c"
        self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>'
        self._said_at, self._said_error = time.monotonic(), not ok
        self._said_unreachable = unreachable

    def say_error(self, exc: CubeError) -> None:
        self.say(f"{type(exc).__name__}: {exc.message}", False, isinstance(exc, Unreachable))

    def reachable_again(self) -> None:
        """The manager answers again: a message saying it did not is no longer true, and
        goes (a panel that only acts, like the form, has no refresh to clear it)."""
        if self._said_unreachable:
            self.message.value = ""
            self._said_error = self._said_unreachable = False

    def wait(self, timeout: float = 30.0) -> bool:
        """Wait until this panel's queued calls are done (True if they are)."""
        return self._lane.idle(timeout)

    WATCH: tuple[str, dict[str, Any]] | None = None  # what to watch to stay current

    def auto_refresh(self, interval: float | None) -> None:
        """Stay current (``None``: stop): by watching what the panel shows, when it has
        something to watch, or else every ``interval`` seconds."""
        if self._auto is not None:
            self._auto.stop()
            self._auto = None
        if interval and self.WATCH is not None:
            self._auto = Follow(
                self._ask, self._apply, self._alive, skip=self._skip, failed=self._failed
            )
        elif interval:
            self._auto = Every(interval, self.refresh, self._alive)

    def _ask(self, index: int) -> tuple[Any, int]:
        path, params = self.WATCH  # type: ignore[misc]
        return self.client.watch(path, index, WATCH_WAIT, **params)  # type: ignore[attr-defined]

    def _apply(self, data: Any, index: int) -> None:
        """Show an answer, unless one from a later moment is shown already (the watch
        and a refresh click may answer in either order)."""
        with self._showing:
            if index < self._shown:
                return
            self._shown = index
            self._show(self._decode(data))
        if self._said_error or time.monotonic() - self._said_at > HOLD:
            self.message.value = ""

    def _refresh_watched(self) -> Future[Any] | None:
        """A refresh of a panel that watches: asked now, shown in order with the watch."""
        return self._fetch(lambda: self._ask(0), lambda answer: self._apply(*answer))

    def _skip(self) -> str:
        return self.view.manager_down() if self.view is not None else ""

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, CubeError):
            self.say_error(exc)
        else:
            self.say(f"{exc}: not asking it; this shows what it said last", False, True)

    def _decode(self, data: Any) -> Any:
        return data

    def _show(self, value: Any) -> None:  # pragma: no cover - panels that watch have one
        raise NotImplementedError

    def refresh(self) -> Future[Any] | None:  # pragma: no cover - every panel has its own
        raise NotImplementedError

    def close(self) -> None:
        self.auto_refresh(None)
        self._lane.close()
        super().close()

    def _alive(self) -> bool:
        return self.view is None or not self.view.closed

    def _fetch(self, call: Callable[[], Any], show: Callable[[Any], None]) -> Future[Any] | None:
        """Refresh from ``call`` in the background, unless the manager cannot answer."""
        why = self.view.manager_down() if self.view is not None else ""
        if why:
            self.say(f"{why}: not asking it; this shows what it said last", False, True)
            return None

        def job() -> None:
            try:
                result = call()
            except CubeError as exc:
                self.say_error(exc)
                return
            show(result)
            if self._said_error or time.monotonic() - self._said_at > HOLD:
                self.message.value = ""

        return self._lane.run(job, key="refresh")

    def _act(self, call: Callable[[], Any], done: Callable[[Any], str]) -> Future[Any]:
        """Run an action in the background; say what came of it."""

        def job() -> Any:
            try:
                result = call()
            except CubeError as exc:
                self.say_error(exc)
                return None
            self.say(done(result))
            return result

        return self._lane.run(job)


def _quick(client: Client) -> Client:
    return client.with_timeout(CALL_TIMEOUT)


class TaskForm(_Panel):
    """Fill in a task and submit it (to a manager or directly to a worker)."""

    def __init__(
        self,
        client: Client,
        on_submit: Callable[[Task], None] | None = None,
        image: str = "cube/echo",
    ) -> None:
        self.client, self.on_submit = _quick(client), on_submit
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

    def send(self) -> Future[Any]:
        spec = self.spec()

        def submitted(task: Task) -> str:
            if self.on_submit:
                self.on_submit(task)
            return f"accepted {task.name} as {str(task.id)[:8]} ({task.state.name})"

        return self._act(lambda: self.client.submit(spec), submitted)


class TaskTable(_Panel):
    """Every task with its state in colour, where it runs, and a Stop button."""

    COLUMNS = ("ID", "Name", "State", "Worker", "Ports", "Restarts", "Reason", "")
    WATCH = ("/tasks", {})

    def __init__(self, client: Client, view: ClusterView | None = None) -> None:
        self.client = _quick(client)
        self.grid = w.GridBox(
            layout=w.Layout(grid_template_columns="repeat(8, auto)", grid_gap="2px 12px")
        )
        self.stop_buttons: dict[str, w.Button] = {}
        self.tasks: list[Task] = []
        self.empty = w.HTML()  # "no tasks yet", shown with the table it describes
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        super().__init__("Tasks", [self.refresh_button, self.grid, self.empty], view)
        self.refresh()

    def refresh(self) -> Future[Any] | None:
        return self._refresh_watched()

    def _decode(self, data: Any) -> list[Task]:
        return [Task.from_wire(t) for t in data or ()]

    def _show(self, tasks: list[Task]) -> None:
        self.tasks = tasks
        cells: list[w.Widget] = [w.HTML(f"<b>{c}</b>") for c in self.COLUMNS]
        buttons = {}
        for task in tasks:
            texts = [html.escape(v) for v in self._texts(task)]
            texts.insert(2, state_badge(task.state))
            cells += [w.HTML(text) for text in texts]
            cells.append(self._stop_button(task, buttons))
        self.grid.children = cells
        self.stop_buttons = buttons
        self.empty.value = "" if tasks else "<i>no tasks yet</i>"

    def row(self, name: str) -> Task | None:
        """The task called ``name`` as last shown (for checks in notebooks and tests)."""
        return next((t for t in reversed(self.tasks) if t.name == name), None)

    def _texts(self, task: Task) -> list[str]:
        port = task.host_port()
        worker = self.view.name(task.worker) if self.view and task.worker else task.worker
        return [
            str(task.id)[:8],
            task.name,
            worker or "-",
            str(port) if port else "-",
            str(task.restart_count),
            task.reason[:60],
        ]

    def _stop_button(self, task: Task, buttons: dict[str, w.Button]) -> w.Widget:
        if task.state in (State.Completed,):
            return w.HTML("")
        button = w.Button(
            description="Stop", button_style="danger", icon="stop", layout=w.Layout(width="80px")
        )
        button.on_click(lambda _, t=task: self.stop(t))
        buttons[str(task.id)] = button
        return button

    def stop(self, task: Task) -> Future[Any]:
        def stopped(_: object) -> str:
            self.refresh()
            return f"asked to stop {task.name}"

        return self._act(lambda: self.client.stop(task.id), stopped)


class NodePanel(_Panel):
    """Each worker: up or down, memory and CPU use as bars, and its task count."""

    WATCH = ("/nodes", {})

    def __init__(self, client: ManagerClient, view: ClusterView | None = None) -> None:
        self.client = _quick(client)
        self.rows = w.VBox()
        super().__init__("Nodes", [self.rows], view)
        self.refresh()

    def refresh(self) -> Future[Any] | None:
        return self._refresh_watched()

    def _show(self, nodes: list[dict[str, Any]]) -> None:
        self.rows.children = self._rows(nodes)

    def _rows(self, nodes: list[dict[str, Any]]) -> list[w.Widget]:
        return [self._row(n) for n in nodes]

    def _row(self, node: dict[str, Any]) -> w.Widget:
        up = node["State"] == "up"
        colour = "#16a34a" if up else "#dc2626" if node["State"] == "down" else "#6b7280"
        total = max(node["Memory"], 1)
        memory = w.FloatProgress(
            value=node["MemoryUsed"] / total, min=0, max=1, description="memory"
        )
        cpu = w.FloatProgress(value=node["CpuPercent"] / 100, min=0, max=1, description="cpu")
        tasks = node["TaskCount"]
        name = self.view.name(node["Name"]) if self.view else node["Name"]
        label = w.HTML(
            f"{badge(node['State'], colour)} <code>{html.escape(name)}</code> "
            f"{tasks} task{'' if tasks == 1 else 's'}, {format_size(node['MemoryUsed'] * 1024)} of "
            f"{format_size(node['Memory'] * 1024)}, {node['CpuPercent']:.0f}% CPU"
        )
        return w.VBox([label, w.HBox([memory, cpu])])


class EventLog(_Panel):
    """The manager's event history, newest first. It refreshes itself every
    ``interval`` seconds (``None``: only when :meth:`refresh` is called)."""

    def __init__(
        self,
        client: ManagerClient,
        limit: int = 12,
        view: ClusterView | None = None,
        interval: float | None = 2.0,
    ) -> None:
        self.client, self.limit = _quick(client), limit
        self.WATCH = ("/events", {"limit": limit})
        self.table = w.HTML()
        super().__init__("Events", [self.table], view)
        self.refresh()
        self.auto_refresh(interval)

    def refresh(self) -> Future[Any] | None:
        return self._refresh_watched()

    def _decode(self, data: Any) -> list[TaskEvent]:
        return [TaskEvent.from_wire(e) for e in data or ()]

    def _show(self, events: list[Any]) -> None:
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
    """Restart, kill, pause or resume the manager and each worker of a LocalCluster.

    A component's state is read from the process table, so it shows at once, and a
    paused manager is never asked anything. Pause, resume and kill are signals and act
    immediately; restart waits for the component to answer, in the background."""

    ACTIONS = ("restart", "kill", "pause", "resume")

    def __init__(self, cluster: LocalCluster, on_change: Callable[[], Any] | None = None) -> None:
        self.cluster, self.on_change = cluster, on_change
        self.buttons: dict[tuple[str, str], w.Button] = {}
        self.labels: dict[str, w.HTML] = {}
        rows = [self._row(c.name) for c in (cluster.manager, *cluster.workers.values())]
        super().__init__("Components", rows, ClusterView(cluster))
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

    def act(self, name: str, action: str) -> Future[Any] | None:
        """Do ``action`` to component ``name``; signals at once, restart in the
        background. Refuses what cannot work (resuming a stopped process)."""
        state = self.cluster.component(name).state
        refusal = self._refusal(name, action, state)
        if refusal:
            self.say(refusal, ok=False)
            return None
        if action == "restart":
            self.say(f"restarting {name}…")
            return self._lane.run(lambda: self._do(name, action))
        self._do(name, action)
        return None

    @staticmethod
    def _refusal(name: str, action: str, state: str) -> str:
        if state == "stopped" and action in ("pause", "resume", "kill"):
            return f"{name} is stopped, so there is nothing to {action}: press Restart to start it"
        if action == "resume" and state == "running":
            return f"{name} is running already (it was not paused)"
        if action == "pause" and state == "paused":
            return f"{name} is paused already"
        return ""

    def _do(self, name: str, action: str) -> None:
        try:
            getattr(self.cluster, action)(name)
        except (RuntimeError, KeyError) as exc:
            self.say(str(exc), ok=False)
        else:
            now = self._settled(name, {"pause": "paused", "resume": "running"}.get(action))
            self.say(f"{action} {name}: done, it is {now}")
        self.refresh()
        if self.on_change:
            self.on_change()

    def _settled(self, name: str, expected: str | None, timeout: float = 1.0) -> str:
        """The component's state once a signal has landed (the process table shows a
        SIGSTOP or SIGCONT a moment after it is sent)."""
        deadline = time.monotonic() + timeout
        state = self.cluster.component(name).state
        while expected and state != expected and time.monotonic() < deadline:
            time.sleep(0.01)
            state = self.cluster.component(name).state
        return state

    def refresh(self) -> None:
        for name, label in self.labels.items():
            component = self.cluster.component(name)
            state = badge(component.state, COMPONENT_COLOURS[component.state])
            label.value = f"{state} <code>{name}</code> {component.url}"


class ManagersPanel(_Panel):
    """Several managers on etcd: who leads, with buttons to kill, pause, resume or
    restart each manager, and to kill or start each member of the cluster's own etcd.

    It looks by itself every ``interval`` seconds (``None``: only on :meth:`refresh`),
    on a thread of its own: each process's state from the process table, then the
    ``/health`` of each running manager and the raft role of each running member, each
    with a short timeout. A paused one is shown paused and never asked. Every button
    only queues its action on the panel's lane, so a click never holds up the kernel."""

    MANAGER_ACTIONS = ("kill", "pause", "resume", "restart")
    MEMBER_ACTIONS = ("kill", "start")

    def __init__(self, cluster: LocalCluster, interval: float | None = 1.0) -> None:
        self.cluster = cluster
        self.buttons: dict[tuple[str, str], w.Button] = {}
        self.labels: dict[str, w.HTML] = {}
        self.seen: dict[str, Look] = {}  # what each manager said at the last look
        self._shown_stopped = False  # the look after the cluster stopped has been shown
        self._looks = Lane("cube-managers-look")
        rows: list[w.Widget] = [self._row(n, self.MANAGER_ACTIONS) for n in cluster.managers]
        if isinstance(cluster.etcd, LocalEtcd):
            rows.append(w.HTML("<i>etcd, where they keep their state</i>"))
            rows += [self._row(m.name, self.MEMBER_ACTIONS) for m in cluster.etcd.members]
        super().__init__("Managers", rows, ClusterView(cluster))
        self.refresh()
        self.auto_refresh(interval)

    def _row(self, name: str, actions: tuple[str, ...]) -> w.Widget:
        self.labels[name] = w.HTML(layout=w.Layout(width="420px"))
        buttons = []
        for action in actions:
            button = w.Button(description=action.capitalize(), layout=w.Layout(width="80px"))
            button.on_click(lambda _, n=name, a=action: self.act(n, a))
            self.buttons[(name, action)] = button
            buttons.append(button)
        return w.HBox([self.labels[name], *buttons])

    # ------------------------------------------------------------------ acting

    def act(self, name: str, action: str) -> Future[Any] | None:
        """Queue ``action`` on manager or etcd member ``name``; refuses at once what
        cannot work (resuming a process that is not paused, starting one that runs)."""
        member = self._member(name)
        state = member.state if member is not None else self.cluster.component(name).state
        refusal = self._refusal(name, action, state)
        if refusal:
            self.say(refusal, ok=False)
            return None
        self.say(f"{action} {name}…")
        return self._lane.run(lambda: self._do(name, action))

    @staticmethod
    def _refusal(name: str, action: str, state: str) -> str:
        if action == "start" and state != "stopped":
            return f"{name} is {state} already"
        return ComponentControls._refusal(name, action, state)

    def _do(self, name: str, action: str) -> None:
        member = self._member(name)
        try:
            if member is None:
                getattr(self.cluster, action)(name)
            elif action == "kill":
                member.kill()
            else:
                member.start()
                self.cluster.etcd.wait_healthy(20, [member])  # type: ignore[union-attr]
        except (RuntimeError, KeyError, TimeoutError, OSError) as exc:
            self.say(str(exc), ok=False)
        else:
            expected = {"pause": "paused", "resume": "running"}.get(action)
            self.say(f"{action} {name}: done, it is {self._settled(name, expected)}")
        self.refresh()

    def _settled(self, name: str, expected: str | None, timeout: float = 1.0) -> str:
        """The state once a signal has landed (the process table shows a SIGSTOP or
        SIGCONT a moment after it is sent). Runs on the panel's lane, never the kernel's
        thread."""
        deadline = time.monotonic() + timeout
        while True:
            member = self._member(name)
            state = member.state if member is not None else self.cluster.component(name).state
            if not expected or state == expected or time.monotonic() > deadline:
                return state
            time.sleep(0.01)

    def _member(self, name: str) -> Any:
        etcd = self.cluster.etcd
        members = etcd.members if isinstance(etcd, LocalEtcd) else []
        return next((m for m in members if m.name == name), None)

    # ------------------------------------------------------------------ looking

    def refresh(self) -> Future[Any]:
        """Queue a look (repeats while one waits are merged into it)."""
        return self._looks.run(self._look, key="look")

    def wait(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        return self._lane.idle(timeout) and self._looks.idle(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self._looks.close()
        super().close()

    def _alive(self) -> bool:
        """Keep looking until the cluster has stopped and the panel has said so: a
        panel that stopped at the close went on showing everything as running."""
        return not self._shown_stopped

    def _look(self) -> None:
        if self.cluster.closed:
            self._show_stopped()
            return
        for seen in looks(self.cluster):
            self.seen[seen.name] = seen
            self.labels[seen.name].value = self._manager_text(seen)
        etcd = self.cluster.etcd
        for member in etcd.members if isinstance(etcd, LocalEtcd) else []:
            leads = member.leads(0.5)
            role = "" if leads is None else "raft leader" if leads else "follower"
            self.labels[member.name].value = self._text(member.state, member.name, role)

    def _show_stopped(self) -> None:
        """The cluster has stopped: each process as the process table has it, asking
        nothing (there is nobody left to ask)."""
        for name, component in self.cluster.managers.items():
            self.labels[name].value = self._text(component.state, name, "", component.url)
        etcd = self.cluster.etcd
        for member in etcd.members if isinstance(etcd, LocalEtcd) else []:
            self.labels[member.name].value = self._text(member.state, member.name, "")
        self.say("the cluster has stopped")
        self._shown_stopped = True

    def _manager_text(self, seen: Look) -> str:
        if seen.leading:
            role = f"<b>leads</b>, epoch {seen.epoch}"
        elif seen.leading is None:
            role = "" if seen.state != "running" else "no answer"
        elif seen.leader:
            role = f"follows {html.escape(seen.leader)}"
        else:
            role = "waits: nobody leads yet"
        return self._text(seen.state, seen.name, role, seen.url)

    @staticmethod
    def _text(state: str, name: str, role: str, url: str = "") -> str:
        where = f" <small>{html.escape(url)}</small>" if url else ""
        shown = f"<code>{html.escape(name)}</code>{where}"
        return f"{badge(state, COMPONENT_COLOURS[state])} {shown} {role}"


class Dashboard(w.VBox):
    """Everything at once for a LocalCluster: form, tasks, nodes, components, events.
    It refreshes itself every ``interval`` seconds while *Auto-refresh* is on (it is,
    unless ``auto=False``), without ever holding up the kernel."""

    def __init__(self, cluster: LocalCluster, interval: float = 1.0, auto: bool = True) -> None:
        client, view = cluster.client, ClusterView(cluster)
        self.cluster, self.interval, self.view = cluster, interval, view
        self.tasks = TaskTable(client, view)
        self.form = TaskForm(client, on_submit=lambda _: self.refresh(), image=cluster.image)
        self.nodes = NodePanel(client, view)
        self.events = EventLog(client, view=view, interval=None)
        self.controls = ComponentControls(cluster, on_change=self.refresh)
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.auto = w.ToggleButton(description="Auto-refresh", icon="clock-o", value=auto)
        self.auto.observe(self._toggle, "value")
        self._timer: Every | None = None
        top = w.HBox([self.form, self.nodes])
        bottom = w.HBox([self.controls, self.events])
        super().__init__([w.HBox([self.refresh_button, self.auto]), top, self.tasks, bottom])
        self._toggle({"new": auto})

    def panels(self) -> list[_Panel]:
        return [self.tasks, self.nodes, self.events, self.controls, self.form]

    def refresh(self) -> None:
        """Queue a refresh of every panel; returns at once."""
        self._forget_unreachable()
        for part in (self.tasks, self.nodes, self.events, self.controls):
            part.refresh()

    def _forget_unreachable(self) -> None:
        """Once the manager runs again (read from the process table, as every panel
        does), no panel keeps saying it could not be reached."""
        if not self.view.manager_down():
            for part in self.panels():
                part.reachable_again()

    def wait(self, timeout: float = 30.0) -> bool:
        """Wait until every panel's queued calls are done."""
        return all(part.wait(timeout) for part in self.panels())

    def close(self) -> None:
        self.auto.value = False
        for part in self.panels():
            part.close()
        super().close()

    def _toggle(self, change: dict[str, Any]) -> None:
        """Auto-refresh: the tasks, nodes and events watch the manager; the controls,
        which read the process table, look every ``interval`` seconds."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        for part in (self.tasks, self.nodes, self.events):
            part.auto_refresh(self.interval if change["new"] else None)
        if change["new"]:
            self._timer = Every(self.interval, self._look, lambda: not self.cluster.closed)

    def _look(self) -> None:
        """The timer's tick: the controls read the process table, and a panel whose
        watch is held up by a paused manager says so at once."""
        self.controls.refresh()
        self._forget_unreachable()
        for part in (self.tasks, self.nodes, self.events):
            why = part._skip()
            if why:
                part._failed(RuntimeError(why))
