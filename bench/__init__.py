"""Benchmarks: `make bench` prints figures measured in one run (see docs/BENCHMARKS.md)."""
