"""Benchmarks: numbers and ratios printed, never asserted. Run them all with `make bench`."""
