"""How fast does the simulator (cube.replay) run the real manager and workers?

Run: ``.venv/bin/python -m bench.bench_replay [--seeds N]``. It prints numbers and
asserts nothing about them.

The figure that matters is a ratio against the clock on the wall: simulated seconds
per second of CPU the run took (one core), for the default scenario (3 workers, 40
tasks, 120 simulated seconds, a seeded nemesis). The same runs are then made with the
components' log lines kept in the story (what ``--seed N`` prints), to show what the
story costs, and the time one event takes on average. Last, the same seeds with three
managers on the simulated etcd (``--managers 3``), quiet.
"""

from __future__ import annotations

import argparse
import time

from bench.common import header
from cube.replay import Scenario, run


def measure(seeds: range, verbose: bool, managers: int = 1) -> tuple[float, float, int]:
    simulated = cpu = 0.0
    events = 0
    for seed in seeds:
        began = time.process_time()
        outcome = run(seed, Scenario(managers=managers), verbose=verbose)
        cpu += time.process_time() - began
        simulated += outcome.simulated
        events += outcome.steps
    return simulated, cpu, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=40)
    args, _ = parser.parse_known_args()
    header(f"bench_replay: {args.seeds} seeds, 3 workers, 40 tasks, 120 s each")
    seeds = range(1000, 1000 + args.seeds)
    run(0)  # imports and first-use costs out of the way
    runs = (("quiet", False, 1), ("with the story", True, 1), ("three managers", False, 3))
    for label, verbose, managers in runs:
        simulated, cpu, events = measure(seeds, verbose, managers)
        print(
            f"  {label:<15} {simulated / cpu:7.0f}x "
            f"simulated s per CPU s; {cpu / args.seeds * 1000:6.0f} ms per seed; "
            f"{cpu / events * 1e6:5.0f} us per event"
        )


if __name__ == "__main__":
    main()
