"""Malformed input through the Python entry points: mutated ``Expr`` bytes into
``_native.derivative`` and ``grad``/``jvp``/``vjp``, mutated SQL text into
``differentiate`` and ``rewrite_sql`` (see ``fuzzing.py`` for the cases and
what each must produce).

Each entry point runs ``AUTOGRAD_FUZZ_CASES`` cases (150 by default) in a
child process; a child that crashes is bisected to the case that crashed it::

    .venv/bin/python -m pytest tests/test_fuzz.py                             # default
    AUTOGRAD_FUZZ_CASES=5000 .venv/bin/python -m pytest tests/test_fuzz.py    # full run
    AUTOGRAD_FUZZ_SEED=7 AUTOGRAD_FUZZ_ONLY=123 \\
        .venv/bin/python -m pytest tests/test_fuzz.py -k differentiate           # one case
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from datafusion import col, lit

from datafusion_autograd import AutogradError, _native

FUZZING = Path(__file__).with_name("fuzzing.py")
DEFAULT_CASES = 150
CASES_PER_CHILD = 2_000


def child(entry: str, start: int, end: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(FUZZING), entry, str(start), str(end)],
        capture_output=True,
        text=True,
        cwd=FUZZING.parent.parent,
    )


def smallest_crash(entry: str, start: int, end: int) -> tuple[int, int]:
    """Bisects a crashing range down to one case, unless a crash needs cases from both halves."""
    while end - start > 1:
        mid = (start + end) // 2
        if child(entry, start, mid).returncode < 0:
            end = mid
        elif child(entry, mid, end).returncode < 0:
            start = mid
        else:
            break
    return start, end


@pytest.mark.parametrize("entry", ["derivative", "dataframe", "differentiate", "rewrite_sql"])
def test_mutated_input_is_an_autograd_error_or_a_checked_result(entry):
    only = os.environ.get("AUTOGRAD_FUZZ_ONLY")
    if only:
        cases = range(int(only), int(only) + 1)
    else:
        cases = range(int(os.environ.get("AUTOGRAD_FUZZ_CASES", DEFAULT_CASES)))
    tally: dict[str, int] = {}
    for start in range(cases.start, cases.stop, CASES_PER_CHILD):
        end = min(start + CASES_PER_CHILD, cases.stop)
        result = child(entry, start, end)
        if result.returncode < 0:
            first, last = smallest_crash(entry, start, end)
            pytest.fail(
                f"cases {first}..{last} of {entry} crashed the process "
                f"(signal {-result.returncode}):\n" + child(entry, first, last).stderr[-8000:]
            )
        assert result.returncode == 0, result.stderr[-8000:]
        for outcome, count in ast.literal_eval(result.stdout.strip().splitlines()[-1]).items():
            tally[outcome] = tally.get(outcome, 0) + count
    print(entry, tally)
    assert sum(tally.values()) == len(cases)
    if not only:
        # The unmutated inputs that start every run were checked: numerically,
        # or, for queries, run after rewriting.
        assert tally.get("ran" if entry == "rewrite_sql" else "checked", 0) > 0, tally


def test_a_panic_while_decoding_is_an_autograd_error():
    """A Decimal128 literal whose value is 14 bytes, not 16, reaches a panic in
    datafusion-proto's decoding; it must come back as AutogradError."""
    payload = (col("x") * lit(Decimal("1.50"))).to_bytes()
    # The Decimal128 message: value (tag 0x0a, 16 bytes), precision (0x10), scale (0x18).
    value = next(
        i
        for i in range(len(payload) - 21)
        if payload[i : i + 2] == b"\x0a\x10" and payload[i + 18] == 0x10 and payload[i + 20] == 0x18
    )
    # Shorten the value to 14 bytes and spend the 2 freed bytes on a repeated
    # precision field (tag 0x10), so the message stays well-formed.
    shortened = (
        payload[: value + 1]
        + bytes([14])
        + payload[value + 2 : value + 16]
        + bytes([0x10, 0x05])
        + payload[value + 18 :]
    )
    assert len(shortened) == len(payload)
    panic = "derivative panicked: Expected a Vec of length 16 but it was 14"
    with pytest.raises(AutogradError, match=panic):
        _native.derivative("grad", [shortened, col("x").to_bytes()])
    # The extension keeps working.
    assert _native.derivative("grad", [payload, col("x").to_bytes()])
