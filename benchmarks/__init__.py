"""Runnable examples and the benchmark suite, run from the repository root.

Each script is a module of this package with a ``main``, run as
``python -m benchmarks.<name> [--quick]``; the tests import them the same way.
"""
