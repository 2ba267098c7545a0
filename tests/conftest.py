"""Shared fixtures. Docker tests skip without a daemon, except in CI
(``CUBE_REQUIRE_DOCKER=1``), where a missing daemon is a failure; etcd tests likewise
without etcd (``CUBE_REQUIRE_ETCD=1``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cube.runtime import docker_available

if TYPE_CHECKING:
    from cube.etcd import LocalEtcd

REQUIRE_DOCKER = os.environ.get("CUBE_REQUIRE_DOCKER") == "1"

# Some tests stop a command as Ctrl-C does (SIGINT). A test run started in the background
# of a non-interactive shell (a CI script's `&`) has SIGINT ignored, and an ignored
# signal is inherited by every command it starts, which then could not be stopped so.
# A handler is not inherited (exec resets it): with one here, the commands get Ctrl-C.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def progress_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Checks write their verdicts down (cube.lab.scores); the tests' verdicts go to a
    scratch folder, and the kernels the tests start inherit it."""
    from cube.lab.scores import PROGRESS_ENV

    folder = tmp_path_factory.mktemp("progress")
    old = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = str(folder)
    yield folder
    if old is None:
        os.environ.pop(PROGRESS_ENV, None)
    else:
        os.environ[PROGRESS_ENV] = old


@pytest.fixture(scope="session")
def docker_ok() -> None:
    ok, why = docker_available(timeout=3)
    if not ok:
        if REQUIRE_DOCKER:
            pytest.fail(f"CUBE_REQUIRE_DOCKER=1 but {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def etcd_ok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The endpoints of a real etcd: ``CUBE_ETCD``'s (CI starts one with
    scripts/etcd-up.sh), else a member started for the session where etcd is installed."""
    from etcd_helpers import REQUIRE_ETCD, session_etcd, why_no_etcd

    why = why_no_etcd()
    if why:
        if REQUIRE_ETCD:
            pytest.fail(f"CUBE_REQUIRE_ETCD=1 but {why}")
        pytest.skip(why)
    with session_etcd(tmp_path_factory.mktemp("etcd")) as endpoints:
        yield endpoints


@pytest.fixture
def local_etcd(tmp_path: Path) -> Iterator[Callable[..., LocalEtcd]]:
    """Start etcd clusters of a test's own (to kill, pause, restart members), on free
    ports; every one is stopped and its data removed after the test."""
    from etcd_helpers import REQUIRE_ETCD

    from cube.etcd import LocalEtcd, etcd_binary

    if etcd_binary() is None:
        why = "no etcd installed (scripts/etcd-up.sh installs Debian's etcd-server)"
        if REQUIRE_ETCD:
            pytest.fail(f"CUBE_REQUIRE_ETCD=1 but {why}")
        pytest.skip(why)
    started: list[LocalEtcd] = []

    def start(members: int = 1, **options: Any) -> LocalEtcd:
        cluster = LocalEtcd.on_free_ports(tmp_path / f"etcd-{len(started)}", members, **options)
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.remove()


# The files that take longest, longest first (seconds on two cores, three at a time):
# they start first, so that a run never ends waiting on one of them alone. The Makefile
# keeps this order (--no-loadscope-reorder); every other file follows in its own order.
LONGEST_FIRST = (
    "tests/test_fuzz.py",  # 255
    "tests/test_browser.py",  # 165
    "tests/test_chaos.py",  # 160
    "tests/test_managers_etcd.py",  # 140
    "tests/test_replay.py",  # 135
    "tests/test_wrong_attempts.py",  # 120
    "tests/test_binder.py",  # 110
    "tests/test_control_faults.py",  # 60
)


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: each file keeps its own order
    for item in items:
        if item.get_closest_marker("docker"):
            item.fixturenames.insert(0, "docker_ok")
        if item.get_closest_marker("etcd"):
            item.fixturenames.insert(0, "etcd_ok")


@pytest.fixture(scope="session", autouse=True)
def _cli_state(tmp_path_factory: pytest.TempPathFactory) -> None:
    """What the CLI remembers between commands (the revision it last wrote) stays in a
    scratch folder, for this process and the cube processes it starts."""
    os.environ["CUBE_STATE_DIR"] = str(tmp_path_factory.mktemp("cli-state"))


@pytest.fixture(autouse=True)
def _learner_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the checkers as a learner does: a failing check answers with its
    verdict instead of raising. (``notebooks/conftest.py`` sets ``CUBE_SOLUTIONS=1`` for
    nbval, for the whole pytest process when both run together.)"""
    monkeypatch.delenv("CUBE_SOLUTIONS", raising=False)
