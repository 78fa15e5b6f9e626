"""How the demos judge SQL against their references: one tolerance, one rule for zeros.

>>> check("loss", max_relative_difference([1.0, -3.0, 0.0], [1.0, -3.0 - 3e-15, 0.0])) < 1e-14
True
>>> check("loss", max_relative_difference([1e-30], [0.0]))
Traceback (most recent call last):
AssertionError: loss: relative difference 4.494e+277 exceeds 1e-09
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# SQL and numpy compute the same arithmetic in different orders, which costs a few units in
# the last place per operation; a wrong derivative or a misplaced row is off by far more.
RTOL = 1e-9

# The smallest positive normal double: a floor for |want| that only an exact zero reaches.
TINY = float(np.finfo(np.float64).tiny)


def max_relative_difference(got: ArrayLike, want: ArrayLike) -> float:
    """Largest |got − want| / max(|want|, TINY), entry by entry.

    Where ``want`` is exactly 0, ``got`` must be 0 too (anything above about
    1e-300 counts as a huge relative difference). An absolute tolerance would
    instead accept any value smaller than itself wherever the reference is
    small, so a derivative that should be 1e-12 could come out as 0, or a
    parameter that should stay at its exact starting 0 could drift, unseen.
    In these demos a reference zero is an exact zero on both sides (a literal
    starting point), so the strict rule costs nothing.

    A NaN or infinity on either side counts as an infinite difference, and the
    shapes must be equal, so nothing is silently broadcast or skipped.

    >>> max_relative_difference([2.0, 0.0], [1.0, 0.0])
    1.0
    >>> max_relative_difference([float("nan")], [1.0])
    inf
    """
    got, want = _same_shape(got, want)
    return _max_ratio(got, want, np.maximum(np.abs(want), TINY))


def max_difference_relative_to_largest(got: ArrayLike, want: ArrayLike) -> float:
    """Largest |got − want| / max(max |want|, TINY): each entry judged on the scale of the whole array.

    For weights, which cross zero during training: an entry near zero carries
    the rounding error of the larger terms it was summed from, not one of its
    own size. Zeros, non-finite values and shapes are handled as in
    ``max_relative_difference``.

    >>> max_difference_relative_to_largest([4.0, 1e-10], [4.0, 0.0])
    2.5e-11
    """
    got, want = _same_shape(got, want)
    return _max_ratio(got, want, max(float(np.max(np.abs(want), initial=0.0)), TINY))


def _same_shape(got: ArrayLike, want: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if got.shape != want.shape:
        raise ValueError(f"shapes differ: got {got.shape}, want {want.shape}")
    return got, want


def _max_ratio(got: np.ndarray, want: np.ndarray, scale: np.ndarray | float) -> float:
    with np.errstate(invalid="ignore", over="ignore"):
        ratio = np.abs(got - want) / scale
    ratio = np.where(np.isfinite(got) & np.isfinite(want), ratio, np.inf)
    return float(np.max(ratio, initial=0.0))


def check(what: str, difference: float, tolerance: float = RTOL) -> float:
    """``difference``, once it is known to be at most ``tolerance``; ``AssertionError`` naming ``what`` if not.

    >>> check("loss", 3e-16)
    3e-16
    >>> check("loss", 1e-3)
    Traceback (most recent call last):
    AssertionError: loss: relative difference 1.000e-03 exceeds 1e-09
    """
    if not difference <= tolerance:
        raise AssertionError(f"{what}: relative difference {difference:.3e} exceeds {tolerance:.0e}")
    return difference
