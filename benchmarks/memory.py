"""The memory one call needs: the process's resident high-water mark above where it started.

Linux only: writing 5 to ``/proc/self/clear_refs`` resets the high-water mark
``VmHWM`` to the current resident size, so the peak of one call can be read
without a process of its own. Memory allocated inside a Rust extension counts
as well as Python's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

STATUS = Path("/proc/self/status")


def peak_bytes(function: Callable[[], Any]) -> int:
    """How far the resident size rose above its starting point while ``function()`` ran.

    >>> peak_bytes(lambda: bytearray(64 * 2**20)) >= 60 * 2**20
    True
    """
    Path("/proc/self/clear_refs").write_text("5")
    before = _kilobytes("VmRSS")
    function()
    return max(0, _kilobytes("VmHWM") - before) * 1024


def _kilobytes(field: str) -> int:
    line = next(line for line in STATUS.read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])
