"""Which runtime a notebook runs its tasks on: said out loud, and chosen in the cell."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from cube.lab.runtimes import RUNTIME_ENV, pick_runtime
from cube.runtime import docker_available

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def test_processes_by_default_and_the_line_says_what_else_there_is(monkeypatch, capsys):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    runtime, image = pick_runtime()
    said = capsys.readouterr().out
    assert (runtime, image) == ("process", "cube/echo")
    assert said.startswith("runtime: process (the default): tasks run as local processes")
    if docker_available()[0]:
        assert 'pick_runtime("docker")' in said
    else:
        assert "Docker is not available here" in said


def test_the_cell_chooses_over_the_environment(monkeypatch, capsys):
    monkeypatch.setenv(RUNTIME_ENV, "docker")
    assert tuple(pick_runtime("process", announce=False)) == ("process", "cube/echo")
    choice = pick_runtime(announce=False)
    assert choice.runtime == "docker" and choice.why == "CUBE_RUNTIME=docker"
    assert choice.image == "cube/busybox" and 'pick_runtime("process")' in str(choice)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="unknown runtime 'podman'"):
        pick_runtime("podman")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_notebook_that_runs_tasks_says_on_which_runtime(path):
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    if "IMAGE" in code:
        assert "RUNTIME, IMAGE = pick_runtime()" in code
    assert 'os.environ.get("CUBE_RUNTIME"' not in code
