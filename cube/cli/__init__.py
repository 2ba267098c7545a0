"""The ``cube`` command: run a worker or a manager, and talk to a running cluster.

Each module does one job:

- :mod:`cube.cli.options`: the options several commands share, each declared once;
- :mod:`cube.cli.serve`: ``cube worker`` and ``cube manager``;
- :mod:`cube.cli.up`: ``cube up``, a whole cluster here;
- :mod:`cube.cli.client`: ``cube run``, ``stop``, ``status``, ``node``, ``logs``,
  ``events``, which talk to a running manager through :mod:`cube.cli.connection`;
- :mod:`cube.cli.export`: ``cube export``, to Kubernetes or Nomad;
- :mod:`cube.cli.tables`: tables and formats for people;
- :mod:`cube.cli.tls`: ``cube tls``, a CA and certificates.

Importing this package imports every command module, to register the commands. So the
server side (bottle, cheroot, diskcache, numpy, docker) is imported inside the commands
that serve, never at the top of a module here: `cube status` and friends start quickly.
"""

from __future__ import annotations

import click

from cube.cli import client, export, serve, tls, up
from cube.lab.commands import lab

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="cube", prog_name="cube")
def cli() -> None:
    """Cube: a small container orchestrator you can read, run and break."""


# The commands are reached through their modules, so that each name here (cube.cli.up,
# cube.cli.tls, ...) stays the module, not a command of the same name.
for command in (
    serve.worker,
    serve.manager,
    up.up,
    client.run,
    client.stop,
    client.status,
    client.node,
    client.logs,
    client.events,
    export.export_,
    tls.tls,
    lab,
):
    cli.add_command(command)


def main() -> None:
    """The console script ``cube`` (pyproject.toml) and ``python -m cube``."""
    cli(prog_name="cube")
