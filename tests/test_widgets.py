"""The notebook widgets, driven headless by clicking their buttons against a real cluster."""

from __future__ import annotations

import pytest
from helpers import eventually

from cube.lab import LocalCluster
from cube.lab.widgets import Dashboard, TaskForm, TaskTable
from cube.task import State


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(workers=2, runtime="process", update_interval=0.3) as c:
        yield c


def test_submit_watch_and_stop_by_clicking(cluster):
    board = Dashboard(cluster)
    board.form.name.value = "clicked"
    board.form.submit.click()
    assert "accepted clicked" in board.form.message.value

    def running():
        board.refresh_button.click()
        task = board.tasks.row("clicked")
        return task is not None and task.state is State.Running and task

    task = eventually(running, what="the table to show it Running")
    assert "Running" in str([c.value for c in board.tasks.grid.children if hasattr(c, "value")])
    board.tasks.stop_buttons[str(task.id)].click()
    assert "asked to stop clicked" in board.tasks.message.value

    def completed():
        board.refresh()
        return board.tasks.row("clicked").state is State.Completed

    eventually(completed, what="Completed")
    assert str(task.id) not in board.tasks.stop_buttons  # no Stop button on a finished task
    assert "clicked" in board.events.table.value
    assert "up" in board.nodes.rows.children[0].children[0].value


def test_bad_input_shows_in_the_form_not_as_an_exception(cluster):
    form = TaskForm(cluster.client)
    form.image.value = "Not An Image"
    form.submit.click()
    assert "BadRequest" in form.message.value and "Task.Image" in form.message.value


def test_component_controls_restart_the_manager(cluster):
    board = Dashboard(cluster)
    before = cluster.manager.proc.pid
    board.controls.buttons[("manager", "restart")].click()
    assert cluster.manager.proc.pid != before
    assert "restart manager: done" in board.controls.message.value
    assert "running" in board.controls.labels["manager"].value


def test_the_task_table_talks_to_a_worker_too(cluster):
    table = TaskTable(cluster.worker_client("worker-1"))
    form = TaskForm(cluster.worker_client("worker-1"), on_submit=lambda _: table.refresh())
    form.name.value = "direct"
    form.submit.click()
    eventually(lambda: (table.refresh(), table.row("direct"))[1].state is State.Running)
    table.stop_buttons[str(table.row("direct").id)].click()
    eventually(lambda: (table.refresh(), table.row("direct"))[1].state is State.Completed)
