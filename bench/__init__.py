"""Benchmarks, run by hand from the repository root: `python -m bench.NAME`. Each
prints a side-by-side table; none is a test."""
