"""``check_grad`` on real tables, registered or not, against numpy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext

import datafusion_autograd as ag
from datafusion_autograd import AutogradError, GradCheck


@pytest.fixture
def samples(tmp_path) -> SessionContext:
    rng = np.random.default_rng(7)
    x = rng.uniform(-3, 3, 200)
    path = tmp_path / "samples.parquet"
    pq.write_table(pa.table({"x": x, "y": rng.uniform(0.5, 2, 200)}), path)
    ctx = SessionContext()
    ctx.register_parquet("samples", str(path))
    return ctx


@pytest.mark.parametrize("registered", [False, True])
def test_a_correct_derivative_passes_on_every_row(samples: SessionContext, registered: bool) -> None:
    ctx = ag.register(samples) if registered else samples
    check = ag.check_grad(ctx, "x * exp(-x * x) * y", "x", "samples")
    assert (check.rows, check.checked) == (200, 200)
    assert check.worst_error < 1e-8
    # The reported row, against the analytic derivative and numpy's own
    # central difference.
    y = ctx.sql(f"SELECT y FROM samples WHERE x = {check.at!r}").to_pydict()["y"][0]
    analytic = (1 - 2 * check.at**2) * np.exp(-check.at**2) * y
    assert abs(check.grad - analytic) <= 1e-13 * max(1.0, abs(analytic))
    h = 6.055454452393339e-6 * max(1.0, abs(check.at))
    f = lambda x: x * np.exp(-x * x) * y  # noqa: E731
    assert abs(check.difference - (f(check.at + h) - f(check.at - h)) / (2 * h)) <= 1e-9


def test_the_worst_row_is_the_one_next_to_a_jump(samples: SessionContext) -> None:
    # floor's derivative is 0, but a central difference across its jump is not.
    check = ag.check_grad(samples, "floor(x) + sin(x)", "x", "SELECT x FROM samples UNION ALL SELECT 0.9999999")
    assert check.rows == 201
    assert check.at == 0.9999999
    assert abs(check.grad - np.cos(0.9999999)) < 1e-12
    assert check.worst_error > 0.9


def test_a_query_ending_in_a_comment_is_still_one_relation(samples: SessionContext) -> None:
    check = ag.check_grad(samples, "x * x", "x", "SELECT x FROM samples WHERE x > 0 -- positive only")
    positives = samples.sql("SELECT COUNT(*) AS n FROM samples WHERE x > 0").to_pydict()["n"][0]
    assert check.rows == positives and check.worst_error < 1e-8


def test_bad_input_is_named(samples: SessionContext) -> None:
    with pytest.raises(AutogradError, match="has no rows"):
        ag.check_grad(samples, "x", "x", "SELECT x FROM samples WHERE x > 10")
    with pytest.raises(AutogradError, match="must be a column name"):
        ag.check_grad(samples, "x", "x + 1", "samples")
    with pytest.raises(AutogradError, match="cannot differentiate through a cast to Utf8View"):
        ag.check_grad(samples, "length(md5(CAST(x AS VARCHAR))) * x", "x", "samples")


def test_the_result_is_a_plain_record() -> None:
    assert GradCheck.__dataclass_fields__.keys() == {"rows", "checked", "worst_error", "at", "grad", "difference"}
