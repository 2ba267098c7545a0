"""The simulator (cube.replay): it replays, it keeps its invariants on every seed of a
campaign, it catches planted bugs, and every seed that ever failed stays a test.

The campaign and the replays run as the real command (``python -m cube.replay``), which
fixes Python's hash salt, so a seed that fails here replays the same anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest
from helpers import CAMPAIGN_TIMEOUT, eventually, replay

from cube.replay import Scenario, run, shrink
from cube.replay.nemesis import Fault
from cube.replay.plants import PLANTS, SEVERAL_MANAGERS, plant

# Every seed that ever failed, and what it found (each is fixed now).
REGRESSIONS = {
    1: "a worker back from a pause re-adopted copies that had moved; none was stopped",
    2: "the one stop of a stray copy was lost on the network, and never sent again",
    25: "the same as seed 2, on another worker",
    191: "a task forgotten by a worker, then ordered there anew, was dropped from the "
    "manager's view of that worker for good (its forgetting was applied after it)",
    252: "a stop meant for a stray copy arrived late, after the task had been placed on "
    "that worker anew, and stopped the wanted copy (it carried the task's generation)",
    9: "the manager's disk was full: writing a task's next due time raised out of the "
    "work loop, and that task was never looked at again",
    13: "the same as seed 9",
    57: "the manager's disk was full while it kept a finished task's output: the "
    "error escaped the watch of that worker (a real watch thread would have died)",
    258: "the same as seed 252",
    491: "the same as seed 252",
}
SEVERAL = Scenario(managers=3)  # for the plants only several managers can show
CAUGHT_WITHIN = 10  # seeds: each planted bug must be caught by one of the first ten


def test_the_same_seed_gives_the_same_run_event_for_event() -> None:
    first, second = run(7, verbose=True), run(7, verbose=True)
    assert first.log == second.log
    assert first.steps == second.steps and first.violations == second.violations
    assert len(first.log) > 100  # the components' own words are in it, not just faults


def test_the_same_seed_replays_the_same_in_another_process() -> None:
    runs = [replay("--seed", "11", "--story", "--json") for _ in range(2)]
    logs = [json.loads(r.stdout)["log"] for r in runs]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert logs[0] == logs[1] and len(logs[0]) > 100


@pytest.mark.timeout(CAMPAIGN_TIMEOUT)
def test_a_campaign_of_500_seeds_keeps_every_invariant() -> None:
    result = replay("--seeds", "0-499", "--jobs", "2", timeout=CAMPAIGN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "500 seeds, 0 failed" in result.stdout


@pytest.mark.parametrize("seed", sorted(REGRESSIONS))
def test_a_seed_that_once_failed_holds(seed: int) -> None:
    result = replay("--seed", str(seed), "--json", "--no-shrink")
    outcome = json.loads(result.stdout)
    assert outcome["ok"], f"{REGRESSIONS[seed]}: {outcome['violations']}"


HUNT = """
import sys
from cube.replay import Scenario, run
from cube.replay.plants import plant
name, managers, seeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with plant(name):
    print(next((s for s in range(seeds) if not run(s, Scenario(managers=managers)).ok), -1))
"""


@pytest.mark.parametrize("name", sorted(PLANTS))
def test_a_planted_bug_is_caught(name: str) -> None:
    """In a process of its own with the hash salt the command fixes: which seeds catch a
    bug depends on it (a set's order), so this states what ``python -m cube.replay``
    finds, and does not change with the salt of the test's process."""
    managers = SEVERAL.managers if name in SEVERAL_MANAGERS else 1
    hunt = subprocess.run(
        [sys.executable, "-c", HUNT, name, str(managers), str(CAUGHT_WITHIN)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert hunt.returncode == 0, hunt.stderr
    failing = int(hunt.stdout.split()[-1])
    assert failing >= 0, f"the planted bug {name!r} was not caught in {CAUGHT_WITHIN} seeds"


def test_a_failure_is_shrunk_to_a_schedule_that_still_fails() -> None:
    with plant("strays"):
        outcome = next(o for o in map(run, range(CAUGHT_WITHIN)) if not o.ok)
        shrunk = shrink(outcome.seed, outcome)
        again = run(outcome.seed, fault_list=shrunk)
    assert len(shrunk) <= len(outcome.faults)
    assert not again.ok
    assert all(isinstance(f, Fault) for f in shrunk)


def test_a_failing_run_is_told_with_its_seed_schedule_and_picture(tmp_path) -> None:
    picture = tmp_path / "run.png"
    with plant("strays"):
        outcome = next(o for o in map(run, range(CAUGHT_WITHIN)) if not o.ok)
    result = replay("--seed", str(outcome.seed), "--picture", str(picture))
    # the command runs without the plant: the same seed holds on the real code
    assert result.returncode == 0, result.stdout
    assert picture.stat().st_size > 10_000
    with plant("strays"):
        from cube.replay.picture import timeline

        failed = run(outcome.seed, sample_every=0.5)
    states = {span.state for span in timeline(failed).spans}
    assert "two copies" in states


def test_a_run_says_what_it_simulated() -> None:
    outcome = run(3)
    assert outcome.simulated == pytest.approx(120.0)
    assert outcome.steps > 500 and outcome.ok


# Fault sequences that need no real process, as explicit schedules: each replays the
# same way every time, and the invariants judge it.
FEW = Scenario(tasks=4, arrive_within=1.0, stop_share=0.0, bad_share=0.0, quiet=40.0)


def test_a_restart_in_backoff_survives_manager_crashes() -> None:
    crashing = Scenario(tasks=3, arrive_within=1.0, stop_share=0.0, bad_share=1.0, quiet=60.0)
    schedule = [Fault(4.0, "crash", "manager", 2.0), Fault(9.0, "crash", "manager", 3.0)]
    outcome = run(5, crashing, schedule)
    assert outcome.ok, outcome.violations
    limit = 3
    assert all(
        t.restart_count == limit and t.state.name == "Failed" for t in outcome.final.values()
    )
    assert all(t.reason.startswith("gave up") for t in outcome.final.values())


def test_a_worker_paused_past_its_ttl_comes_back_and_every_task_runs_once() -> None:
    outcome = run(5, FEW, [Fault(5.0, "pause", "w1", 8.0)])
    assert outcome.ok, outcome.violations
    assert any("w1" in line and "paused" in line for line in outcome.log)


@pytest.mark.parametrize(
    ("target", "point"),
    [("w2", "worker-started"), ("manager", "manager-saved"), ("manager", "manager-sending")],
)
def test_a_crash_at_each_fault_point_leaves_one_copy_per_task(target: str, point: str) -> None:
    schedule = [Fault(0.5, "crash at point", target, 3.0, point), Fault(6.0, "crash", "w1", 2.0)]
    outcome = run(5, FEW, schedule)
    assert outcome.ok, outcome.violations
    assert any(f"crashed at {point}" in line for line in outcome.log)


def test_another_thread_keeps_the_machine_clock_while_a_run_goes_on() -> None:
    """Found in CI: a thread left over from an earlier test in the same process (a real
    lease's keeper) read the simulation's clock, started its loops in the simulated
    world and changed what the run did. The swap is for the simulation's thread only."""
    import threading
    import time

    from cube import clock, loops

    seen: list[float] = []
    rounds: list[float] = []
    stop = threading.Event()

    def other() -> None:
        loop = loops.start("a real loop", lambda: rounds.append(clock.now()) or 0.01)
        while not stop.is_set():
            seen.append(clock.now())
            stop.wait(0.005)
        loop.stop()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        outcome = run(3)
    finally:
        stop.set()
        thread.join(10)
    assert outcome.ok and seen and rounds
    assert all(abs(t - time.time()) < 60 for t in seen + rounds)  # never the run's 2027


def test_a_campaign_killed_leaves_no_worker_behind() -> None:
    """Its pool's workers end with it, however it ends: a campaign killed by a test's
    timeout once left two workers waiting on their queue for ever."""
    campaign = subprocess.Popen(
        [sys.executable, "-m", "cube.replay", "--seeds", "0-499", "--jobs", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        parent = psutil.Process(campaign.pid)
        workers = eventually(lambda: len(kids := parent.children()) == 2 and kids, 60, "workers")
    finally:
        campaign.kill()
        campaign.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    for left in alive:
        left.kill()
    assert not alive, f"left behind: {alive}"
