"""``python -m cube.replay``: run one seed and tell its story, or run a campaign.

    python -m cube.replay --seed 7                 # one run; on a violation, shrink it
    python -m cube.replay --seed 7 --story         # the whole story, every line
    python -m cube.replay --seed 7 --picture t.png # the timeline of where copies ran
    python -m cube.replay --seeds 0-499 --jobs 2   # a campaign; failing seeds listed
    python -m cube.replay --seed 7 --managers 3    # three managers on a simulated etcd

Python salts its string hashes per process, and the order a set of task IDs is walked
in reaches the order tasks are looked at. A replay must not depend on that, so this
command always runs with ``PYTHONHASHSEED=0`` (it starts itself again with it if need
be): a seed replays the same on any machine.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import click

from cube.procs import die_with_parent
from cube.replay.run import Outcome, Scenario, run, shrink


@click.command()
@click.option("--seed", type=int, help="Run this one seed.")
@click.option("--seeds", default="", help="A campaign: a range like 0-499.")
@click.option("--jobs", default=1, show_default=True, help="Processes for a campaign.")
@click.option("--story", is_flag=True, help="Print the run's whole story.")
@click.option("--picture", type=click.Path(dir_okay=False), help="Draw the timeline (PNG).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--no-shrink", is_flag=True, help="Do not look for a shorter failing schedule.")
@click.option(
    "--managers",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    help="Managers: several share a simulated etcd, and one is elected.",
)
def main(
    seed: int | None,
    seeds: str,
    jobs: int,
    story: bool,
    picture: str | None,
    as_json: bool,
    no_shrink: bool,
    managers: int,
) -> None:
    """Replay the real manager and workers under a seeded simulation."""
    if seed is None and not seeds:
        raise click.UsageError("give --seed N or --seeds A-B")
    scenario = Scenario(managers=managers)
    if seed is not None:
        sys.exit(_one(seed, scenario, story, picture, as_json, not no_shrink))
    sys.exit(_campaign(_range(seeds), scenario, jobs, as_json))


def _one(
    seed: int, scenario: Scenario, story: bool, picture: str | None, as_json: bool, shrinking: bool
) -> int:
    verbose = story or not as_json
    outcome = run(seed, scenario, verbose=verbose, sample_every=0.5 if picture else 0.0)
    shrunk = shrink(seed, outcome, scenario) if shrinking and not outcome.ok else None
    if as_json:
        click.echo(json.dumps(_summary(outcome, shrunk), indent=2))
    else:
        _tell(outcome, shrunk, story)
    if picture:
        from cube.replay.picture import figure

        figure(outcome).savefig(picture, dpi=110)
        click.echo(f"timeline written to {picture}")
    return 0 if outcome.ok else 1


def _tell(outcome: Outcome, shrunk: list | None, story: bool) -> None:
    click.echo(
        f"seed {outcome.seed}: {len(outcome.faults)} faults, "
        f"{outcome.simulated:.0f} s simulated in {outcome.wall:.2f} s "
        f"({outcome.simulated / outcome.wall:.0f}x), {outcome.steps} events"
    )
    if outcome.ok:
        click.echo("every invariant held")
    for line in outcome.violations:
        click.echo(f"VIOLATION {line}")
    if shrunk is not None:
        click.echo(f"the shortest schedule that still fails ({len(shrunk)} faults):")
        for fault in shrunk:
            click.echo(f"  {fault}")
    if story or not outcome.ok:
        click.echo("the story:" if story else "the story (python -m cube.replay --seed N --story):")
        lines = outcome.log if story else _about(outcome)
        for line in lines:
            click.echo(line)


def _about(outcome: Outcome) -> list[str]:
    """The lines of the story that concern the tasks that broke a rule, and the faults."""
    names = {n for line in outcome.violations for n in line.split() if n in outcome.names.values()}
    keys = {k[:8] for k, n in outcome.names.items() if n in names}
    return [
        line
        for line in outcome.log
        if "nemesis" in line[:22]
        or " up" in line[-6:]
        or "is down" in line
        or any(k in line for k in keys)
        or any(f"{n} " in line for n in names)
        or "VIOLATION" in line
    ]


def _campaign(seeds: list[int], scenario: Scenario, jobs: int, as_json: bool) -> int:
    one = functools.partial(_quiet_run, scenario=scenario)
    if jobs > 1:
        parent = (os.getpid(),)  # its workers end with it, even killed
        with ProcessPoolExecutor(jobs, initializer=die_with_parent, initargs=parent) as pool:
            outcomes = list(pool.map(one, seeds, chunksize=4))
    else:
        outcomes = [one(s) for s in seeds]
    failed = [o for o in outcomes if not o.ok]
    simulated = sum(o.simulated for o in outcomes)
    wall = sum(o.wall for o in outcomes)
    if as_json:
        click.echo(json.dumps([_summary(o, None) for o in outcomes]))
    else:
        for outcome in failed:
            click.echo(f"seed {outcome.seed} FAILED: {outcome.violations[0]}")
        click.echo(
            f"{len(seeds)} seeds, {len(failed)} failed; {simulated:.0f} s simulated in "
            f"{wall:.1f} s of runs ({simulated / max(wall, 1e-9):.0f}x)"
        )
    return 1 if failed else 0


def _quiet_run(seed: int, scenario: Scenario) -> Outcome:
    outcome = run(seed, scenario)
    outcome.log = []  # the story stays behind: replay the seed to read it
    return outcome


def _summary(outcome: Outcome, shrunk: list | None) -> dict[str, Any]:
    return {
        "seed": outcome.seed,
        "ok": outcome.ok,
        "violations": outcome.violations,
        "faults": [str(f) for f in outcome.faults],
        "shrunk": [str(f) for f in shrunk] if shrunk is not None else None,
        "simulated": outcome.simulated,
        "wall": outcome.wall,
        "events": outcome.steps,
        "log": outcome.log,
    }


def _range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    try:
        return list(range(int(first), int(last or first) + 1))
    except ValueError:
        raise click.BadParameter(f"seeds must be a range like 0-499, not {text!r}") from None


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        os.execve(sys.executable, [sys.executable, "-m", "cube.replay", *sys.argv[1:]], env)
    main()
