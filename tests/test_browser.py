"""A real browser in real JupyterLab: open chapter 5, run it, click Submit and Stop.

Headless Chromium comes from the system (Debian's package; Playwright's own browser
download cannot work offline) and is driven by Playwright. The test skips where no
Chromium is installed, except in CI (CUBE_REQUIRE_BROWSER=1), where that is a failure.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port, wait_healthy

NOTEBOOK = "05-worker-api.ipynb"
NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CUBE_REQUIRE_BROWSER") == "1":
            pytest.fail("CUBE_REQUIRE_BROWSER=1 but no chromium is installed")
        pytest.skip("no chromium installed")
    return path


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a free port, serving a copy of the notebooks."""
    root = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    port, token = free_port(), secrets.token_hex(8)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         f"--ServerApp.token={token}", "--allow-root", f"--ServerApp.root_dir={root}",
         "--ServerApp.open_browser=False"],
        stdout=(tmp_path / "lab.log").open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "CUBE_RUNTIME": "process"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/api/status?token=" + token, proc, timeout=60)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_chapter_5_in_jupyterlab(lab, chromium, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000
        )

        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        submit = page.locator(".widget-button", has_text=re.compile(r"^\s*Submit\s*$")).first
        submit.wait_for(timeout=120_000)
        submit.scroll_into_view_if_needed()
        submit.click()

        table = page.locator(".widget-gridbox").first
        refresh = page.locator(".widget-button", has_text="Refresh").first
        _click_until(refresh, lambda: "Running" in table.inner_text())
        page.screenshot(path=str(tmp_path / "running.png"), full_page=True)

        table.locator(".widget-button", has_text="Stop").first.click()
        _click_until(refresh, lambda: "Completed" in table.inner_text())
        expect(table).to_contain_text("Completed")
        page.screenshot(path=str(tmp_path / "completed.png"), full_page=True)
        browser.close()
    assert (tmp_path / "completed.png").stat().st_size > 10_000


def _click_until(button, condition, attempts: int = 60) -> None:
    """Press Refresh until the table shows what we wait for (as a person would)."""
    for _ in range(attempts):
        if condition():
            return
        button.click()
        button.page.wait_for_timeout(250)
    raise AssertionError("the table never showed the expected state")
