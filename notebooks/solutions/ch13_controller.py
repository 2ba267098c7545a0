"""Chapter 13: a replica controller: make the copies wanted running equal the wish."""

from cube.lab.exercise import exercise
from cube.task import State


def _number(task, name):
    suffix = task.name[len(name) + 1 :]
    return int(suffix) if suffix.isdigit() else 0


@exercise("ch13_controller")
def reconcile(client, name, replicas, image):
    """Submit or stop tasks named ``name-N`` until ``replicas`` copies are wanted running."""
    mine = [t for t in client.tasks() if t.name.startswith(f"{name}-")]
    wanted = [
        t
        for t in mine
        if t.desired is State.Running
        and t.state is not State.Completed
        and not (t.state is State.Failed and t.restart_at is None)  # given up: never again
    ]
    number = max((_number(t, name) for t in mine), default=0)
    for _ in range(replicas - len(wanted)):  # too few: start more
        number += 1
        client.submit({"Name": f"{name}-{number}", "Image": image})
    newest_first = sorted(wanted, key=lambda t: t.created, reverse=True)
    for extra in newest_first[: max(0, len(wanted) - replicas)]:  # too many: stop the newest
        client.stop(extra.id)
