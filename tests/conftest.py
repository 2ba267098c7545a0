"""Shared fixtures. Docker tests skip without a daemon, except in CI
(``CUBE_REQUIRE_DOCKER=1``), where a missing daemon is a failure."""

from __future__ import annotations

import os

import pytest

from cube.runtime import docker_available

REQUIRE_DOCKER = os.environ.get("CUBE_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="session")
def docker_ok() -> None:
    ok, why = docker_available(timeout=3)
    if not ok:
        if REQUIRE_DOCKER:
            pytest.fail(f"CUBE_REQUIRE_DOCKER=1 but {why}")
        pytest.skip(why)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("docker"):
            item.fixturenames.insert(0, "docker_ok")


@pytest.fixture(autouse=True)
def _learner_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the checkers as a learner does: a failing check answers with its
    verdict instead of raising. (``notebooks/conftest.py`` sets ``CUBE_SOLUTIONS=1`` for
    nbval, for the whole pytest process when both run together.)"""
    monkeypatch.delenv("CUBE_SOLUTIONS", raising=False)
