"""Benchmarks for reflexio_store: `python benchmarks/bench.py --help`. Not part of the tests."""
