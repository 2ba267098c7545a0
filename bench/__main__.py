"""Run every benchmark: `python -m bench` (or `make bench`)."""

import importlib
import sys

from bench.common import machine

SUITES = [
    "bench_worker",
    "bench_manager",
    "bench_sim",
    "bench_store",
    "bench_wire",
    "bench_api",
    "bench_e2e",
]

if __name__ == "__main__":
    print(f"Cube benchmarks on {machine()}")
    for name in sys.argv[1:] or SUITES:
        importlib.import_module(f"bench.{name}").main()
