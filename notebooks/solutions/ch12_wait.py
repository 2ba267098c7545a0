"""Chapter 12: ``cube wait``: wait for a task to reach a state, or say why it will not."""

import click

from cube.client import CubeError, ManagerClient, WillNotHappen
from cube.lab.exercise import exercise
from cube.task import State


@exercise("ch12_wait")
@click.command("wait")
@click.argument("task_id")
@click.option("--state", default="Running", help="The state to wait for.")
@click.option("--timeout", default=10.0, help="Seconds to wait at most.")
@click.option("--manager", default="127.0.0.1:5555", help="The manager's address.")
def wait(task_id, state, timeout, manager):
    """Wait until task TASK_ID is in STATE; exit 1 at once if it never will be."""
    try:
        wanted = State[state.capitalize()]
    except KeyError:
        raise click.BadParameter(f"{state!r} is not a state", param_hint="--state") from None
    with ManagerClient(manager, timeout=2) as client:
        try:
            task = client.wait_for(task_id, wanted, timeout=timeout)
        except (WillNotHappen, TimeoutError) as exc:
            raise click.ClickException(str(exc)) from None
        except CubeError as exc:  # no such task, bad ID, or no manager to ask
            raise click.ClickException(exc.message) from None
    click.echo(f"{task.name} is {task.state.name}")
