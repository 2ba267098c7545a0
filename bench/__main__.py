"""Run every benchmark: `python -m bench` (or `make bench`); some by name:
`python -m bench bench_api bench_e2e`. What follows the first flag is the suites' to
read (`python -m bench bench_failover --quick`)."""

import importlib
import itertools
import sys

from bench.common import machine

SUITES = [
    "bench_worker",
    "bench_manager",
    "bench_sim",
    "bench_store",
    "bench_wire",
    "bench_api",
    "bench_tls",
    "bench_e2e",
    "bench_replay",
]

if __name__ == "__main__":
    print(f"Cube benchmarks on {machine()}")
    names = list(itertools.takewhile(lambda a: not a.startswith("-"), sys.argv[1:]))
    for name in names or SUITES:
        importlib.import_module(f"bench.{name}").main()
