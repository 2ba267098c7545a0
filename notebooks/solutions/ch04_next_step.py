"""Chapter 4: the worker's step: compare what is wanted of a task with what it is."""

from cube.lab.exercise import exercise
from cube.task import State


@exercise("ch04_next_step")
def next_step(task):
    """What the worker should do about ``task`` now: "start", "stop" or "none"."""
    if task.desired is State.Completed:
        return "none" if task.state is State.Completed else "stop"
    # wanted Running: start it if it has not started; a Failed one waits for the manager
    return "start" if task.state is State.Scheduled else "none"
