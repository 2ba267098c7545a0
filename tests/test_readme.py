"""The README's first cluster example, run as written, on each runtime.

The commands are read from the README's code block under "A cluster on your laptop",
not copied here, so the README cannot drift from what works. Each runs as a real
process with its words unchanged; only where things live is set from outside, through
the environment a reader could set too (``CUBE_RUNTIME``, ``CUBE_PORT`` and
``CUBE_DATA_DIR`` for ``cube up``, ``CUBE_MANAGER`` for the others), so that the test
uses free ports and a scratch folder. ``<id-prefix>`` is the one blank a reader fills
in: the test fills it with the ID ``cube run`` printed. The commands that follow until
Ctrl-C (``--watch``, ``--follow``) are stopped with SIGINT once they have printed.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from helpers import eventually

from cube.ports import free_ports

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
SECTION = "## A cluster on your laptop"
FOLLOWING = ("--watch", "--follow")


def readme_commands() -> list[list[str]]:
    """Each command of the section's first ``sh`` block, as argv, comments dropped."""
    text = README.read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index(SECTION) :], re.S)
    assert block, f"no sh block under {SECTION!r}"
    commands = []
    for line in block.group(1).splitlines():
        for part in line.split("#", 1)[0].split(";"):
            if part.strip():
                commands.append(shlex.split(part))
    return commands


def test_the_readme_block_is_what_this_test_runs():
    commands = readme_commands()
    assert commands[0][:2] == [".venv/bin/cube", "up"]
    assert any(c[1] == "run" for c in commands)
    assert all(c[0] == ".venv/bin/cube" for c in commands), commands


class Reader:
    """A reader at a terminal: one `cube up` left running, and the other commands."""

    def __init__(self, tmp: Path, runtime: str) -> None:
        self.env = {**os.environ, "CUBE_RUNTIME": runtime, "CUBE_DATA_DIR": str(tmp / "data")}
        self.new_ports()
        self.log = tmp / "up.log"
        self.up: subprocess.Popen | None = None
        self.task_id = ""

    def new_ports(self) -> None:
        """Four free ports in a row: the manager's, then the workers'."""
        port = eventually(lambda: free_ports(4, consecutive=True)[0])
        self.env.update(CUBE_PORT=str(port), CUBE_MANAGER=f"127.0.0.1:{port}")

    def argv(self, words: list[str]) -> list[str]:
        """``.venv/bin/cube`` is this environment's cube; ``<id-prefix>`` the task's."""
        cube = str(Path(sys.executable).parent / "cube")
        return [cube, *(self.task_id[:8] if w == "<id-prefix>" else w for w in words[1:])]

    def start_up(self, words: list[str]) -> None:
        """`cube up`, again on other ports if one was taken between the look and the bind
        (by another test's connection), as a person would run it again."""
        for attempt in range(3):
            with self.log.open("ab") as out:
                self.up = subprocess.Popen(
                    self.argv(words), stdout=out, stderr=subprocess.STDOUT, env=self.env
                )
            eventually(
                lambda: "Cube is up." in self.log.read_text() or self.up.poll() is not None,
                timeout=60,
                what="cube up",
            )
            if self.up.poll() is None:
                return
            said = self.log.read_text()
            assert "Address already in use" in said and attempt < 2, said
            self.new_ports()

    def run(self, words: list[str]) -> str:
        done = subprocess.run(
            self.argv(words), capture_output=True, text=True, timeout=60, env=self.env
        )
        assert done.returncode == 0, f"{shlex.join(words)}: {done.stdout}{done.stderr}"
        return done.stdout

    def follow(self, words: list[str]) -> str:
        """A command that runs until Ctrl-C: it must print, then stop cleanly on SIGINT."""
        out = self.log.parent / "follow.log"
        with out.open("wb") as handle:
            proc = subprocess.Popen(
                self.argv(words), stdout=handle, stderr=subprocess.STDOUT, env=self.env
            )
        try:
            eventually(lambda: out.read_text().strip(), timeout=30, what=shlex.join(words))
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=30)
        assert code in (0, 130), f"{shlex.join(words)} exited {code}: {out.read_text()}"
        return out.read_text()

    def ctrl_c(self) -> None:
        if self.up is None or self.up.poll() is not None:
            return
        children = psutil.Process(self.up.pid).children(recursive=True)
        self.up.send_signal(signal.SIGINT)
        assert self.up.wait(timeout=60) == 0, self.log.read_text()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left behind: {alive}"

    def state_of_web(self) -> str:
        rows = [line.split() for line in self.run([".venv/bin/cube", "status"]).splitlines()[1:]]
        return next((r[5] for r in rows if len(r) > 5 and r[1] == "web"), "")


@pytest.fixture(params=["process", "docker"])
def reader(request, tmp_path):
    if request.param == "docker":
        request.getfixturevalue("docker_ok")
    person = Reader(tmp_path, request.param)
    yield person
    person.ctrl_c()


def test_the_readme_cluster_example_works_as_written(reader):
    for words in readme_commands():
        verb = words[1]
        if verb == "up":
            reader.start_up(words)
        elif any(flag in words for flag in FOLLOWING):
            assert reader.follow(words)
        elif verb == "run":
            reader.task_id = reader.run(words).split()[0]
            # what the README promises next: the task runs, and its health check passes
            settled = eventually(
                lambda: (state := reader.state_of_web()) in ("Running", "Failed") and state,
                timeout=30,
                what="web to run or fail",
            )
            assert settled == "Running", reader.run([".venv/bin/cube", "status", "<id-prefix>"])
        elif verb == "status" and "<id-prefix>" in words:
            shown = reader.run(words)
            assert "web" in shown and "Failed" not in shown, shown
        elif verb == "export":
            assert "kind: Deployment" in reader.run(words)
        else:
            reader.run(words)
    assert reader.task_id, "the README's example runs no task"
