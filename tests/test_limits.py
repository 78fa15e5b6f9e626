"""What a user of stock PyPI ``datafusion`` sees at the edges: SQL text that
must survive a round trip (a ``--`` would start a comment), expressions too
deep for the host's decoder, and derivatives past the size limit — each a
clear ``AutogradError`` or a correct number, never a crash."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from datafusion import SessionConfig, SessionContext, col
from datafusion import functions as f

import datafusion_autograd as ag
from datafusion_autograd import AutogradError


def value(ctx: SessionContext, sql: str) -> float:
    return ctx.sql(f"SELECT {sql} AS v FROM (VALUES (2.0, 3.0)) AS t(x, y)").to_pydict()["v"][0]


def test_a_double_negation_prints_without_starting_a_comment() -> None:
    text = ag.differentiate("-(-y) * x", "x")
    assert "--" not in text
    # The text is read back by a plain session, whose parser would drop the
    # rest of the line after `--`.
    assert value(SessionContext(), text) == 3.0


@pytest.mark.parametrize(
    "marker, expected",
    [
        ("grad(exp(-(-x)), x)", math.exp(2.0)),
        ("grad(CASE WHEN -(-0.384) > abs(y) THEN x ELSE -(-x) * x END, x)", 4.0),
        ("grad(-(-(-x)) * y, x)", -3.0),
        ("jvp(x - (-(-y)), y, -(-1.0))", -1.0),
    ],
)
def test_negations_inside_markers_survive_the_bridge(marker: str, expected: float) -> None:
    got = value(ag.register(SessionContext()), marker)
    assert abs(got - expected) <= 1e-15 * abs(expected)


def test_the_dataframe_api_names_its_depth_limit() -> None:
    e = col("x")
    for _ in range(100):
        e = f.sin(e)
    with pytest.raises(AutogradError, match=r"nests more than 50 calls deep .* write it in SQL"):
        ag.grad(e, "x")


def test_an_expression_5000_deep_is_refused_before_datafusion_can_crash() -> None:
    # In a child: were the check ever skipped, stock datafusion's own
    # Expr.to_bytes would overflow the stack and kill the process.
    program = """
from datafusion import col, functions as f
import datafusion_autograd as ag
e = col("x")
for _ in range(5000):
    e = f.sin(e)
try:
    ag.grad(e, "x")
except ag.AutogradError as error:
    print(error)
"""
    child = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    assert "nests more than 50 calls deep" in child.stdout


def test_deep_sql_is_limited_by_the_hosts_parser_until_the_user_raises_it() -> None:
    nested = "x"
    for _ in range(60):
        nested = f"sin({nested})"
    query = f"SELECT grad({nested}, x) AS d FROM (VALUES (0.5)) AS t(x)"
    with pytest.raises(Exception, match="RecursionLimitExceeded"):
        ag.register(SessionContext()).sql(query)
    config = SessionConfig().set("datafusion.sql_parser.recursion_limit", "1000")
    got = ag.register(SessionContext(config)).sql(query).to_pydict()["d"][0]
    # The chain rule: the product of cos(sinᵏ(0.5)).
    x, want = 0.5, 1.0
    for _ in range(60):
        want *= math.cos(x)
        x = math.sin(x)
    assert abs(got - want) <= 1e-12 * abs(want)


def test_a_derivative_past_the_size_limit_names_both_numbers() -> None:
    ctx = ag.register(SessionContext(), max_derivative_nodes=200)
    assert value(ctx, "grad(tan(exp(x)), x)") == pytest.approx(
        math.exp(2.0) / math.cos(math.exp(2.0)) ** 2, rel=1e-14
    )
    tenth = "tan(exp(x))"
    for _ in range(10):
        tenth = f"grad({tenth}, x)"
    with pytest.raises(AutogradError, match=r"grows to \d+ expression nodes, past the limit of 200 \(autograd.max_derivative_nodes\)"):
        value(ctx, tenth)
