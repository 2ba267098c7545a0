"""The simulator with three managers on a simulated etcd (``--managers 3``): a
campaign, its replays, every seed that ever failed, and failovers as explicit fault
schedules. The planted "unchecked lease" is with the other plants, in test_replay.py."""

from __future__ import annotations

import json

import pytest
from helpers import CAMPAIGN_TIMEOUT, replay

from cube.replay import Scenario, run
from cube.replay.nemesis import Fault

# Every seed that ever failed with three managers, and what it found (each is fixed now).
SEVERAL = Scenario(managers=3)
REGRESSIONS_SEVERAL = {
    95: "etcd did not answer the write of a due time: the error escaped the leader's work "
    "loop (in production its thread would have died, and no task been looked at again)",
    97: "the same, for the deletion of a due time",
    38: "a stop was stored, but etcd lost the write of its history: the control loop was "
    "told only after the history was written, so the stop was never carried out",
    59: "the same as seed 38",
    126: "the same as seed 38, for a task stopped while it waited out a restart",
}


@pytest.mark.parametrize("seed", sorted(REGRESSIONS_SEVERAL))
def test_a_seed_that_once_failed_with_three_managers_holds(seed: int) -> None:
    result = replay("--seed", str(seed), "--managers", "3", "--json", "--no-shrink")
    outcome = json.loads(result.stdout)
    assert outcome["ok"], f"{REGRESSIONS_SEVERAL[seed]}: {outcome['violations']}"


@pytest.mark.timeout(CAMPAIGN_TIMEOUT)
def test_a_campaign_with_three_managers_on_etcd_keeps_every_invariant() -> None:
    result = replay("--seeds", "0-59", "--managers", "3", "--jobs", "2", timeout=CAMPAIGN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "60 seeds, 0 failed" in result.stdout


def test_three_managers_replay_the_same_event_for_event() -> None:
    first, second = run(9, SEVERAL, verbose=True), run(9, SEVERAL, verbose=True)
    assert first.log == second.log and first.steps == second.steps
    assert any("m1 leads /cube/leader" in line for line in first.log)


# Several managers: the leader (m1, the first to stand) paused past its lease, killed,
# or cut off, and etcd itself paused; another leads, and the old one follows it.
FEW_SEVERAL = Scenario(
    tasks=4, arrive_within=1.0, stop_share=0.0, bad_share=0.0, quiet=40.0, managers=3
)


@pytest.mark.parametrize("kind", ["pause", "crash", "partition"])
def test_a_leader_lost_hands_over_and_every_task_runs_once(kind: str) -> None:
    outcome = run(5, FEW_SEVERAL, [Fault(5.0, kind, "m1", 8.0)], verbose=True)
    assert outcome.ok, outcome.violations
    took_over = [
        line for line in outcome.log if "leads /cube/leader" in line and " m1 " not in line
    ]
    assert took_over, "no other manager took over"


def test_a_leader_paused_past_its_lease_stops_acting_when_it_thaws() -> None:
    outcome = run(5, FEW_SEVERAL, [Fault(5.0, "pause", "m1", 8.0)], verbose=True)
    assert outcome.ok, outcome.violations
    assert any("m1" in line and "no longer leads" in line for line in outcome.log)


def test_etcd_paused_for_longer_than_a_lease_is_survived() -> None:
    outcome = run(5, FEW_SEVERAL, [Fault(5.0, "pause", "etcd", 8.0)])
    assert outcome.ok, outcome.violations
