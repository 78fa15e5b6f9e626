"""Runnable examples and the benchmark suite, run from the repository root.

Each script is a module of this package with a ``main``, run as
``python -m benchmarks.<name> [--quick]``; the tests import them the same way.
What they share has one home each: ``compare`` (tolerance and relative
differences), ``timing``, ``cli`` (the command line) and ``sql`` (their SQL files).
"""
