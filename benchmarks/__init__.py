"""Benchmarks of instanceapi against the simulated cloud (not part of the test suite).

Run from the repository root::

    python -m benchmarks.bench            # N = 1,000 / 10,000 / 100,000, 10 s per load
    python -m benchmarks.bench --sizes 1000 --duration 3   # a quick look

See ``benchmarks/bench.py`` and ``docs/benchmark.md``.
"""
