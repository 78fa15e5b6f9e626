"""Wall-clock timing: one call, or several variants interleaved so that drift hits them alike."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

Result = TypeVar("Result")


def timed(function: Callable[..., Result], *args: Any) -> tuple[Result, float]:
    """``function(*args)`` and the seconds it took.

    >>> result, seconds = timed(sum, [1, 2, 3])
    >>> result, seconds > 0
    (6, True)
    """
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


@dataclass
class Timing:
    """Seconds of repeated runs of one variant.

    >>> Timing([0.003, 0.001, 0.002]).span()
    '2.0 ms (1.0 ms–3.0 ms)'
    """

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def span(self) -> str:
        """The median with the range around it."""
        low, high = format_seconds(min(self.seconds)), format_seconds(max(self.seconds))
        return f"{format_seconds(self.median)} ({low}–{high})"


def format_seconds(seconds: float) -> str:
    """Seconds in the unit that keeps three significant digits readable.

    >>> [format_seconds(s) for s in (2.5, 0.0123, 0.000124)]
    ['2.50 s', '12.3 ms', '124 µs']
    """
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def interleaved(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """Times each variant ``repeats`` times, one of each per round, rotating the order.

    Every variant runs once first, untimed, to warm plan caches, pages and JITs.

    >>> sorted(interleaved({"a": lambda: None, "b": lambda: None}, repeats=3))
    ['a', 'b']
    """
    names = list(variants)
    for name in names:
        variants[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(timed(variants[name])[1])
    return {name: Timing(times) for name, times in seconds.items()}
