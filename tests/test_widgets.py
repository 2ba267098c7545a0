"""The notebook widgets, driven headless by clicking their buttons against a real cluster.

A click only queues the call (widgets never block the kernel), so each test waits for
the panel with ``wait()`` before reading what it shows, as a notebook cell would."""

from __future__ import annotations

import time

import pytest
from helpers import eventually

from cube.lab import LocalCluster
from cube.lab.widgets import Dashboard, EventLog, TaskForm, TaskTable
from cube.task import State


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(workers=2, runtime="process", update_interval=0.3) as c:
        yield c


@pytest.fixture
def board(cluster):
    board = Dashboard(cluster, auto=False)
    yield board
    board.close()


def test_submit_watch_and_stop_by_clicking(cluster, board):
    board.form.name.value = "clicked"
    board.form.submit.click()
    board.wait()
    assert "accepted clicked" in board.form.message.value

    def running():
        board.refresh_button.click()
        board.wait()
        task = board.tasks.row("clicked")
        return task is not None and task.state is State.Running and task

    task = eventually(running, what="the table to show it Running")
    assert "Running" in str([c.value for c in board.tasks.grid.children if hasattr(c, "value")])
    assert "worker-" in str([c.value for c in board.tasks.grid.children if hasattr(c, "value")])
    board.tasks.stop_buttons[str(task.id)].click()
    board.tasks.wait()
    assert "asked to stop clicked" in board.tasks.message.value

    def completed():
        board.refresh()
        board.wait()
        return board.tasks.row("clicked").state is State.Completed

    eventually(completed, what="Completed")
    assert str(task.id) not in board.tasks.stop_buttons  # no Stop button on a finished task
    assert "clicked" in board.events.table.value

    def first_node() -> str:  # a probe may not have answered yet on a busy machine
        board.refresh()
        board.wait()
        return board.nodes.rows.children[0].children[0].value

    nodes = eventually(lambda: "up" in (row := first_node()) and row, what="worker-1 up")
    assert "worker-1" in nodes  # one name per worker, everywhere


def test_bad_input_shows_in_the_form_not_as_an_exception(cluster):
    form = TaskForm(cluster.client)
    form.image.value = "Not An Image"
    form.submit.click()
    form.wait()
    assert "BadRequest" in form.message.value and "Task.Image" in form.message.value


def test_component_controls_restart_the_manager(cluster, board):
    before = cluster.manager.proc.pid
    board.controls.buttons[("manager", "restart")].click()
    assert "restarting manager" in board.controls.message.value  # at once, before it is done
    board.controls.wait()
    assert cluster.manager.proc.pid != before
    assert "restart manager: done" in board.controls.message.value
    assert "running" in board.controls.labels["manager"].value


def test_a_paused_manager_holds_up_nothing_and_resume_acts_at_once(cluster, board):
    board.wait()  # calls already under way would wait out their one-second timeout
    board.controls.buttons[("manager", "pause")].click()
    try:
        assert "paused" in board.controls.labels["manager"].value
        assert "pause manager: done, it is paused" in board.controls.message.value
        began = time.monotonic()
        board.refresh_button.click()
        board.wait(timeout=5)
        assert time.monotonic() - began < 0.5  # nobody waited on the paused manager
        assert "the manager is paused" in board.tasks.message.value
    finally:
        began = time.monotonic()
        board.controls.buttons[("manager", "resume")].click()
        took = time.monotonic() - began
    assert took < 1.0
    assert "running" in board.controls.labels["manager"].value
    board.refresh()
    board.wait()
    assert board.tasks.message.value == ""  # the warning cleared once a call succeeded


def test_resume_of_a_killed_component_says_so(cluster, board):
    board.controls.buttons[("worker-2", "kill")].click()
    try:
        board.controls.buttons[("worker-2", "resume")].click()
        assert "worker-2 is stopped" in board.controls.message.value
        assert "Restart" in board.controls.message.value
    finally:
        board.controls.buttons[("worker-2", "restart")].click()
        board.controls.wait()
    assert "running" in board.controls.labels["worker-2"].value


def test_the_event_log_refreshes_by_itself(cluster):
    log = EventLog(cluster.client, interval=0.2)
    try:
        cluster.client.submit({"Name": "noticed", "Image": "cube/echo"})
        eventually(lambda: "noticed" in log.table.value, what="the log to show the new event")
    finally:
        log.close()


def test_the_task_table_talks_to_a_worker_too(cluster):
    table = TaskTable(cluster.worker_client("worker-1"))
    form = TaskForm(cluster.worker_client("worker-1"), on_submit=lambda _: table.refresh())
    form.name.value = "direct"
    form.submit.click()
    form.wait()

    def shown(state):
        table.refresh()
        table.wait()
        return table.row("direct") is not None and table.row("direct").state is state

    eventually(lambda: shown(State.Running))
    table.stop_buttons[str(table.row("direct").id)].click()
    eventually(lambda: shown(State.Completed))


def test_no_tasks_yet_goes_once_the_table_lists_one():
    with LocalCluster(workers=1, runtime="process", update_interval=0.3) as fresh:
        table = TaskTable(fresh.client)
        table.wait()
        assert "no tasks yet" in table.empty.value
        fresh.client.submit({"Name": "first", "Image": "cube/echo"})

        def listed():
            table.refresh()
            table.wait()
            return table.row("first")

        eventually(listed, what="the table to list the task")
        shown = [table.empty.value, table.message.value]
        assert not any("no tasks yet" in text for text in shown), shown
        table.close()


def test_resume_clears_the_forms_unreachable_at_once(cluster, board):
    board.wait()
    board.form.image.value = "Not An Image"  # so the request the manager held adds no task
    board.controls.buttons[("manager", "pause")].click()
    try:
        board.form.submit.click()
        board.form.wait()
        assert "Unreachable" in board.form.message.value
    finally:
        board.controls.buttons[("manager", "resume")].click()
    assert "running" in board.controls.labels["manager"].value
    assert board.form.message.value == ""  # not minutes later: as Resume is pressed


def test_a_bad_request_stays_in_the_form_while_the_manager_runs(cluster, board):
    board.form.image.value = "Not An Image"
    board.form.submit.click()
    board.form.wait()
    board.refresh()
    board.wait()
    assert "BadRequest" in board.form.message.value  # only "could not reach it" goes


def test_notebook_00s_cell_submits_no_second_task_when_the_form_did(cluster, board, capsys):
    from cube.lab.welcome import submit_once

    board.form.name.value = "mine-from-the-form"
    board.form.submit.click()
    board.form.wait()
    assert "accepted mine-from-the-form" in board.form.message.value
    task = submit_once(cluster, "mine-from-the-form", "cube/echo")
    assert "already there (from the form)" in capsys.readouterr().out
    assert [t.id for t in cluster.client.tasks() if t.name == "mine-from-the-form"] == [task.id]
    fresh = submit_once(cluster, "mine-from-the-cell", "cube/echo")
    assert "submitted mine-from-the-cell" in capsys.readouterr().out
    for one in (task, fresh):
        cluster.client.stop(one.id)
