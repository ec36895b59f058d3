"""Benchmarks of irnet_fast: pytest-benchmark suites and ``python -m benchmarks.report``."""
