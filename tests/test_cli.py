"""``python -m datafusion_autograd``: run as a separate process, as a user would."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from datafusion import SessionContext

from datafusion_autograd import differentiate


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datafusion_autograd", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prints_the_derivative() -> None:
    run = cli("differentiate", "sin(x) * y", "x")
    assert (run.returncode, run.stdout, run.stderr) == (0, "cos(x) * y\n", "")
    x, y = 0.7, -1.5
    value = SessionContext().sql(f"SELECT {run.stdout.strip()} AS d FROM (VALUES ({x}, {y})) AS t(x, y)")
    assert value.to_pydict()["d"] == pytest.approx([y * np.cos(x)], rel=1e-15)


@pytest.mark.parametrize("dialect", ["datafusion", "duckdb", "postgresql", "sqlite"])
def test_writes_for_the_chosen_engine(dialect: str) -> None:
    run = cli("differentiate", "x * signum(y) + log2(x)", "x", "--dialect", dialect)
    assert run.returncode == 0, run.stderr
    assert run.stdout == differentiate("x * signum(y) + log2(x)", "x", dialect) + "\n"


def test_help() -> None:
    run = cli("--help")
    assert run.returncode == 0 and "differentiate" in run.stdout
    run = cli("differentiate", "--help")
    assert run.returncode == 0
    for text in ("EXPR", "COLUMN", "--dialect", "datafusion,duckdb,postgresql,sqlite", "example:"):
        assert text in run.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "the following arguments are required: COMMAND"),
        (("integrate", "x", "x"), "invalid choice: 'integrate'"),
        (("differentiate", "x * x"), "the following arguments are required: COLUMN"),
        (("differentiate", "x * x", "x", "--dialect", "mysql"), "invalid choice: 'mysql'"),
    ],
)
def test_usage_errors_exit_with_2(args: tuple[str, ...], message: str) -> None:
    run = cli(*args)
    assert run.returncode == 2 and run.stdout == ""
    assert message in run.stderr and "usage: python -m datafusion_autograd" in run.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("differentiate", "nanvl(x, 1.0)", "x"), "no derivative rule for 'nanvl'"),
        (("differentiate", "x * x", "x + 1"), "must be a column name"),
        (("differentiate", "x +", "x"), "invalid SQL expression `x +`"),
        (
            ("differentiate", "sin(x % y)", "x", "--dialect", "postgresql"),
            "postgresql has no spelling for '%' of non-integer operands",
        ),
    ],
)
def test_differentiation_errors_exit_with_1(args: tuple[str, ...], message: str) -> None:
    run = cli(*args)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith("python -m datafusion_autograd: error: ") and message in run.stderr
