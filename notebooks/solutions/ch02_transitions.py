"""Chapter 2: the state machine as a table: for each state, where a task may go next."""

from cube.lab.exercise import exercise
from cube.task import State


@exercise("ch02_transitions")
def transitions():
    """Each state -> the set of states a task in it may move to."""
    return {
        State.Pending: {State.Scheduled, State.Completed, State.Failed},
        State.Scheduled: {State.Scheduled, State.Running, State.Completed, State.Failed},
        State.Running: {State.Running, State.Completed, State.Failed, State.Scheduled},
        State.Completed: set(),
        State.Failed: {State.Scheduled, State.Completed},
    }
