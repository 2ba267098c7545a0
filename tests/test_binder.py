"""A Binder-like launch: a fresh environment built from binder/ alone runs every notebook.

Binder ignores pyproject.toml once binder/ exists, so this is the check that its pinned
requirements, runtime.txt, postBuild and start are enough on their own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_binder_files_alone_run_every_notebook(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "scripts/binder-check.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all notebooks ran in the Binder-like environment" in done.stdout
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    assert sorted(p.name for p in (tmp_path / "out").glob("*.ipynb")) == notebooks


def test_binder_pins_python_and_every_requirement():
    assert (ROOT / "binder/runtime.txt").read_text().strip() == "python-3.11"
    lines = (ROOT / "binder/requirements.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)
    assert any(line.startswith("jupyter-server-proxy==") for line in pins)
    post_build = (ROOT / "binder/postBuild").read_text()
    assert "set -e" in post_build and "pip install" in post_build
