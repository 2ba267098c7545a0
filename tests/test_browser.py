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
import time
from pathlib import Path

import pytest
import requests
from helpers import eventually, free_port

from cube.lab.scores import PROGRESS_ENV

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
    # Render every cell (JupyterLab 4 otherwise renders only the cells in view).
    settings = tmp_path / "settings/@jupyterlab/notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    news = tmp_path / "settings/@jupyterlab/apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         f"--ServerApp.token={token}", "--allow-root", f"--ServerApp.root_dir={root}",
         "--ServerApp.open_browser=False"],
        stdout=(tmp_path / "lab.log").open("wb"), stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "CUBE_RUNTIME": "process",
            # this lab's own scores: none of the other tests' checks in this process
            PROGRESS_ENV: str(tmp_path / "progress"),
            "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        },
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(
            lambda: requests.get(f"{url}/api/status?token={token}", timeout=2).ok,
            timeout=60,
            what="JupyterLab to answer",
        )
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_chapter_5_in_jupyterlab(lab, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    url, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = _open(browser, f"{url}/lab/tree/{NOTEBOOK}?token={token}", width=1400)
        _run_above(page, "Clean up")  # as a learner would before playing
        submit = page.locator(".widget-button", has_text=re.compile(r"^\s*Submit\s*$")).first
        submit.wait_for(timeout=120_000)
        name = page.locator(".widget-text:has(label:text-is('Name')) input").first
        name.fill("from-the-browser")
        submit.click()

        table = page.locator(".widget-gridbox").first
        refresh = page.locator(".widget-button", has_text="Refresh").first
        mine = table.locator(".widget-html", has_text="from-the-browser")
        state = mine.locator("xpath=following-sibling::*[1]")
        _click_until(refresh, lambda: mine.count() == 1 and state.inner_text() == "Running")
        page.screenshot(path=str(tmp_path / "running.png"), full_page=True)

        mine.locator("xpath=following-sibling::*[6]").click()  # its Stop button
        _click_until(refresh, lambda: state.inner_text() == "Completed")
        page.screenshot(path=str(tmp_path / "completed.png"), full_page=True)

        _clean_up(page)
        browser.close()
    assert (tmp_path / "completed.png").stat().st_size > 10_000


def test_dashboard_auto_refreshes_in_jupyterlab(lab, chromium, tmp_path):
    """The dashboard of 00-index, which refreshes itself (Auto-refresh is on from the
    start): a task submitted from its form shows up Running, and after its Stop button
    Completed, with nobody pressing Refresh (the refreshes run on a timer thread, never
    holding up the kernel). With CUBE_SCREENSHOT set to a path, the dashboard's picture
    is also saved there (the README's is made so).
    """
    from playwright.sync_api import expect, sync_playwright

    url, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = _open(browser, f"{url}/lab/tree/00-index.ipynb?token={token}", width=1600)
        _run_above(page, "Exercise")
        board = page.locator(".jp-OutputArea-output:has(.widget-toggle-button)").first
        board.wait_for(timeout=120_000)
        auto = board.locator(".widget-toggle-button", has_text="Auto-refresh")
        expect(auto).to_have_class(re.compile("mod-active"))  # on without a click

        name = board.locator(".widget-text:has(label:text-is('Name')) input")
        image = board.locator(".widget-text:has(label:text-is('Image')) input")
        for task, picture in [("web", "cube/echo"), ("api", "cube/echo"), ("crashy", "")]:
            name.fill(task)
            image.fill(picture or "cube/echo:bad-exit")
            board.locator(".widget-button", has_text="Submit").click()
            # each answered before the next is typed: the fields reach the kernel as
            # separate messages, which a busy machine may deliver after the click
            expect(board).to_contain_text(f"accepted {task} as", timeout=30_000)
        table = board.locator(".widget-gridbox")
        web = table.locator(".widget-html", has_text=re.compile(r"^web$"))
        state = web.locator("xpath=following-sibling::*[1]")
        expect(state).to_have_text("Running", timeout=30_000)
        crashy = table.locator(".widget-html", has_text=re.compile(r"^crashy$"))
        restarts = crashy.locator("xpath=following-sibling::*[4]")
        expect(restarts).to_have_text(re.compile(r"^[1-9]"), timeout=30_000)  # it crashed
        board.screenshot(path=str(tmp_path / "dashboard.png"))
        if os.environ.get("CUBE_SCREENSHOT"):
            shutil.copy(tmp_path / "dashboard.png", os.environ["CUBE_SCREENSHOT"])

        web.locator("xpath=following-sibling::*[6]").click()  # its Stop button
        expect(state).to_have_text("Completed", timeout=30_000)
        board.locator(".widget-toggle-button", has_text="Auto-refresh").click()

        _clean_up(page)
        browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


WRONG_PACKER = """from cube.lab.exercise import exercise


@exercise("ch10_scheduler")
class Packer:
    name = "packer"

    def select_candidates(self, task, nodes):
        return np.flatnonzero(fits(task, nodes))

    def score(self, task, nodes, candidates):
        return np.zeros(len(candidates))

    def pick(self, scores, candidates):
        return 0  # always node 0, whether it has room or not, up or down
"""


def test_an_exercise_in_jupyterlab_fails_then_passes(lab, chromium, tmp_path):
    """Chapter 10's exercise as a learner meets it: write a scheduler that always picks
    node 0, run the check and see it fail with a verdict and the timeline picture;
    then write a real packer (the solution's code) and see the check pass."""
    from playwright.sync_api import expect, sync_playwright

    url, token = lab
    right = (NOTEBOOKS / "solutions" / "ch10_scheduler.py").read_text()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = _open(browser, f"{url}/lab/tree/10-schedulers.ipynb?token={token}", width=1400)
        _run_above(page, "Build it: a packing scheduler")
        exercise = page.locator(".jp-CodeCell:has(.cm-content:has-text('@exercise'))").first
        check = page.locator(".jp-CodeCell:has(.cm-content:has-text('check_packer(Packer)'))")
        for code, mark in [(WRONG_PACKER, "Not yet"), (right, "Passed")]:
            _write(page, exercise, code)
            _run_cell(page, exercise)
            _run_cell(page, check)
            verdict = check.locator(".jp-OutputArea-output").last  # after the progress line
            expect(verdict).to_contain_text(mark, timeout=120_000)
            expect(verdict.locator("img.cube-timeline")).to_be_visible()
            if mark == "Not yet":
                _unfold_the_hints(verdict)
            verdict.screenshot(path=str(tmp_path / f"{mark.split()[0].lower()}.png"))
        expect(verdict).not_to_contain_text("Not yet")
        _clean_up(page)
        browser.close()
    failing = (tmp_path / "not.png").stat().st_size
    assert failing > 10_000 and (tmp_path / "passed.png").stat().st_size > 10_000


def _unfold_the_hints(verdict) -> None:
    """The answer shows only after every hint before it was asked for, one click each."""
    from playwright.sync_api import expect

    answer = verdict.locator("summary", has_text="Show the answer")
    expect(answer).to_be_hidden()
    more = verdict.locator("summary", has_text="Show another hint")
    for n in range(more.count()):
        more.nth(n).click()
    expect(answer).to_be_visible()
    answer.click()
    expect(verdict.locator("details.cube-hint").last).to_have_attribute("open", "")


def test_resume_in_jupyterlab_brings_the_manager_back_at_once(lab, chromium, tmp_path):
    """The dashboard of 00-index: pause the manager (the dashboard says so without
    waiting on it), then click Resume: within 2 s the dashboard shows it running and
    its task table answers again."""
    from playwright.sync_api import expect, sync_playwright

    url, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = _open(browser, f"{url}/lab/tree/00-index.ipynb?token={token}", width=1600)
        label, row = _pause_manager(page)
        tasks = page.locator(".widget-vbox:has(> .widget-html b:text-is('Tasks'))").first
        expect(tasks).to_contain_text("the manager is paused", timeout=3_000)
        page.screenshot(path=str(tmp_path / "paused.png"), full_page=True)

        began = time.monotonic()
        row.locator(".widget-button", has_text="Resume").click()
        expect(label).to_contain_text("running", timeout=2_000)
        assert time.monotonic() - began < 2.0
        expect(tasks).not_to_contain_text("the manager is paused", timeout=5_000)
        page.screenshot(path=str(tmp_path / "resumed.png"), full_page=True)
        _clean_up(page)
        browser.close()


def test_resume_in_jupyterlab_clears_the_forms_old_unreachable(lab, chromium, tmp_path):
    """Submit from 00's dashboard while the manager is paused: the form says
    Unreachable. Resume: the form stops saying so at once, not minutes later."""
    from playwright.sync_api import expect, sync_playwright

    url, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = _open(browser, f"{url}/lab/tree/00-index.ipynb?token={token}", width=1600)
        label, row = _pause_manager(page)
        form = page.locator(".widget-vbox:has(> .widget-html b:text-is('New task'))").first
        form.locator(".widget-button", has_text="Submit").click()
        expect(form).to_contain_text("Unreachable", timeout=10_000)
        page.screenshot(path=str(tmp_path / "unreachable.png"), full_page=True)

        row.locator(".widget-button", has_text="Resume").click()
        expect(label).to_contain_text("running", timeout=2_000)
        expect(form).not_to_contain_text("Unreachable", timeout=2_000)
        _clean_up(page)
        browser.close()


def test_run_all_then_the_check_and_the_progress_in_jupyterlab(lab, chromium, tmp_path):
    """A learner opens chapter 2 fresh: no output from anybody's earlier run. Run All
    Cells: the check under the unwritten stub says "Not yet", nowhere "Passed". Then
    notebook 00's progress cell lists chapter 2 as not passing yet."""
    from playwright.sync_api import expect, sync_playwright

    url, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = _open(browser, f"{url}/lab/tree/02-tasks-and-states.ipynb?token={token}", 1400)
        page.locator(".jp-CodeCell").last.wait_for()  # every cell is drawn, outputs too
        assert page.locator(".jp-OutputArea-output").count() == 0  # stored clean
        _run_all(page)
        check = page.locator(".jp-CodeCell:has(.cm-content:has-text('check_transitions('))")
        verdict = check.locator(".jp-OutputArea-output").last  # after the progress line
        expect(verdict).to_contain_text("Not yet", timeout=120_000)
        expect(verdict).to_contain_text("not written yet")
        last = page.locator(".jp-CodeCell .jp-InputPrompt").last  # [n]: once it has run
        expect(last).to_have_text(re.compile(r"\[\d+\]"), timeout=60_000)
        expect(page.locator(".jp-Notebook")).not_to_contain_text("Passed")
        page.screenshot(path=str(tmp_path / "run-all.png"), full_page=True)

        page.close()
        # ?reset: a workspace with 00 alone (JupyterLab would also reopen chapter 2)
        index = _open(browser, f"{url}/lab/tree/00-index.ipynb?reset&token={token}", 1400)
        shown = index.locator(".jp-CodeCell:has(.cm-content:has-text('progress()'))")
        table = shown.locator(".jp-OutputArea-output")
        _run_until(index, shown, lambda: expect(table).to_contain_text("02-tasks", timeout=20_000))
        expect(table.locator("tr", has_text="02-tasks-and-states")).to_contain_text("not yet")
        expect(table.locator("tr", has_text="01-the-pieces")).to_contain_text("not checked yet")
        browser.close()


def _write(page, cell, code: str) -> None:
    """Replace a cell's code as a learner would: select all of it, then type."""
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(code)


def _run_until(page, cell, shown, attempts: int = 3) -> None:
    """Run ``cell`` until ``shown()`` passes: a page still settling may take the focus
    from the cell just clicked, and Shift+Enter then runs another one. A person who
    sees nothing happen presses again; running this cell twice changes nothing."""
    from playwright.sync_api import Error, expect

    for attempt in range(attempts):
        try:
            _close_dialogs(page)
            cell.locator(".cm-content").click(timeout=15_000)
            expect(cell).to_have_class(re.compile("jp-mod-active"))
            page.keyboard.press("Shift+Enter")
            shown()
            return
        except (AssertionError, Error):
            if attempt == attempts - 1:
                raise


def _close_dialogs(page) -> None:
    """Close whatever JupyterLab popped up over the notebook (a slow kernel start can
    bring one), as a person would before going on: Escape, which cancels."""
    from playwright.sync_api import expect

    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        page.keyboard.press("Escape")
        expect(dialog).to_have_count(0, timeout=10_000)


def _run_cell(page, cell) -> None:
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")


def _open(browser, url: str, width: int = 1400):
    """A page with the notebook at ``url`` loaded and its kernel idle."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": width, "height": 1000})
    for attempt in range(3):
        page.goto(url)
        try:
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            # The status says idle before the kernel is even attached ("No Kernel"), and
            # a Run chosen then may do nothing: first the kernel's name, then idle.
            kernel = page.locator(".jp-KernelName").first
            expect(kernel).not_to_have_text(re.compile("No Kernel|^$"), timeout=60_000)
            break
        except (AssertionError, PlaywrightError):
            # On a loaded machine the page's fetch of the notebook can fail ("File Load
            # Error ... Failed to fetch", seen in CI): load the page again, as a person
            # would. Anything else is a failure.
            if attempt == 2 or not page.get_by_text("File Load Error").count():
                raise
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    return page


def _run_above(page, heading: str) -> None:
    """Run every cell above the section called ``heading``."""
    cell = page.locator(f".jp-MarkdownCell:has(h2:text-is('{heading}'))")
    _run_from(page, cell, "Run All Above Selected Cell")


def _clean_up(page) -> None:
    """Run the notebook's clean-up section and see it report that nothing is left."""
    from playwright.sync_api import expect

    page.locator(".jp-MarkdownCell:has(h2:text-is('Clean up'))").click()
    _menu(page, "Run Selected Cell and All Below")
    done = "nothing this notebook started is still running|every process of the cluster has ended"
    expect(page.locator(".jp-OutputArea-output").last).to_contain_text(
        re.compile(done), timeout=60_000
    )


def _pause_manager(page):
    """Run 00's dashboard and press the manager's Pause; its label and control row."""
    from playwright.sync_api import expect

    _run_above(page, "Exercise")
    label = page.locator(".widget-html", has_text=re.compile(r"manager\s+http"))
    label.wait_for(timeout=120_000)
    row = label.locator("xpath=..")
    row.locator(".widget-button", has_text="Pause").click()
    expect(label).to_contain_text("paused", timeout=2_000)
    return label, row


def _run_all(page) -> None:
    """Run All Cells."""
    _run_from(page, page.locator(".jp-MarkdownCell").first, "Run All Cells")


def _run_from(page, cell, item: str) -> None:
    """Select ``cell`` and choose ``item`` of the Run menu; chosen again if nothing
    started (a busy page can drop a click, or put a dialog over the notebook, as it can
    for a person, who would close it and choose again)."""
    from playwright.sync_api import Error, expect

    first = page.locator(".jp-CodeCell .jp-InputPrompt").first
    for _ in range(3):
        try:
            _close_dialogs(page)  # one popped up over the notebook takes every click
            cell.click(timeout=15_000)  # the notebook, not the page, has the focus
            _menu(page, item)
            expect(first).to_have_text(re.compile(r"\[(\d+|\*)\]"), timeout=30_000)
            return
        except (AssertionError, Error):
            continue
    raise AssertionError(f"{item} never started the notebook; {_what_the_page_shows(page)}")


def _what_the_page_shows(page) -> str:
    """What a person would see when the notebook did not start: the kernel's status, a
    dialog, an open menu, the first prompt (for the failure's message)."""
    status = page.locator(".jp-Notebook-ExecutionIndicator").first
    seen = {
        "kernel": status.get_attribute("data-status") if status.count() else None,
        "dialogs": page.locator(".jp-Dialog").all_inner_texts(),
        "menus open": page.locator(".lm-Menu").count(),
        "first prompt": page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()[:1],
        "kernel name": page.locator(".jp-KernelName").all_inner_texts(),
    }
    return ", ".join(f"{k}: {v!r}" for k, v in seen.items())


def _menu(page, item: str) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text(item, exact=True).click()


def _click_until(button, condition, attempts: int = 60) -> None:
    """Press Refresh until the table shows what we wait for (as a person would)."""
    for _ in range(attempts):
        if condition():
            return
        button.click()
        button.page.wait_for_timeout(250)
    raise AssertionError("the table never showed the expected state")
