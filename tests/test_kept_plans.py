"""A statement sent again is rewritten and planned from what its first sending
kept — and still reads the rows, schemas and definitions of the moment."""

import numpy as np
import pyarrow as pa
import pytest
from datafusion import SessionContext

import datafusion_autograd as ag

# The gradient of a least-squares loss with respect to every row of w, and
# the loss itself: one statement, sent at every step of gradient descent.
BACKWARD = """
CREATE OR REPLACE TABLE grads AS
WITH loss AS (
    SELECT AVG((p.z - y.y) * (p.z - y.y)) AS l
    FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p
    JOIN y ON p.s = y.s
)
SELECT i, w, grad((SELECT l FROM loss), w) AS g FROM w
"""
UPDATE = "CREATE OR REPLACE TABLE w AS SELECT i, w - 0.1 * g AS w FROM grads"


def least_squares(samples: int = 40, features: int = 3, seed: int = 3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(samples, features)), rng.normal(size=samples), rng.normal(size=features)


def register(ctx: SessionContext, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> None:
    s, i = np.meshgrid(np.arange(x.shape[0]), np.arange(x.shape[1]), indexing="ij")
    tables = {
        "x": {"s": s.ravel(), "i": i.ravel(), "v": x.ravel()},
        "y": {"s": np.arange(len(y)), "y": y},
        "w": {"i": np.arange(len(w)), "w": w},
    }
    for name, columns in tables.items():
        if ctx.table_exist(name):
            ctx.deregister_table(name)
        ctx.register_record_batches(name, [[pa.RecordBatch.from_pydict(columns)]])


def analytic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """∂/∂w of mean((xw − y)²)."""
    return 2 * x.T @ (x @ w - y) / len(y)


def gradients(ctx: SessionContext) -> np.ndarray:
    found = ctx.sql("SELECT i, g FROM grads ORDER BY i").to_pydict()
    return np.array(found["g"])


def test_the_steps_of_a_training_loop_run_copies_of_one_plan():
    """Formed once and planned once: each update writes w from the gradient's own table, as
    tight as w was registered, so every step after the first runs a copy. (A size of another
    order is planned again: see below.)"""
    x, y, w = least_squares()
    ctx = ag.AutogradContext()
    register(ctx, x, y, w)
    for _ in range(6):
        ctx.sql(BACKWARD).collect()
        np.testing.assert_allclose(gradients(ctx), analytic(x, y, w), rtol=1e-12, atol=1e-14)
        ctx.sql(UPDATE).collect()
        w = w - 0.1 * analytic(x, y, w)
    assert ag.kept_statistics(ctx) == {"formed": 1, "reused": 5, "planned": 1, "copied": 5}


def test_new_rows_of_the_same_size_are_read_by_the_copy():
    x, y, w = least_squares()
    ctx = ag.AutogradContext()
    register(ctx, x, y, w)
    ctx.sql(BACKWARD).collect()
    x2, y2, w2 = least_squares(seed=4)
    register(ctx, x2, y2, w2)
    ctx.sql(BACKWARD).collect()
    np.testing.assert_allclose(gradients(ctx), analytic(x2, y2, w2), rtol=1e-12, atol=1e-14)
    assert ag.kept_statistics(ctx)["copied"] == 1


def test_tables_of_another_size_are_planned_again():
    x, y, w = least_squares()
    ctx = ag.AutogradContext()
    register(ctx, x, y, w)
    ctx.sql(BACKWARD).collect()
    x2, y2, w2 = least_squares(samples=75, seed=5)
    register(ctx, x2, y2, w2)
    ctx.sql(BACKWARD).collect()
    np.testing.assert_allclose(gradients(ctx), analytic(x2, y2, w2), rtol=1e-12, atol=1e-14)
    assert ag.kept_statistics(ctx) == {"formed": 1, "reused": 1, "planned": 2, "copied": 0}


def test_a_table_of_another_schema_forms_the_statement_again():
    x, y, w = least_squares()
    ctx = ag.AutogradContext()
    register(ctx, x, y, w)
    ctx.sql(BACKWARD).collect()
    # w now carries a column more: the FROM w the gradient is read at has it too.
    ctx.deregister_table("w")
    ctx.register_record_batches(
        "w", [[pa.RecordBatch.from_pydict({"i": np.arange(len(w)), "w": w, "tag": ["a"] * len(w)})]]
    )
    ctx.sql(BACKWARD).collect()
    np.testing.assert_allclose(gradients(ctx), analytic(x, y, w), rtol=1e-12, atol=1e-14)
    assert ag.kept_statistics(ctx)["formed"] == 2


def test_a_view_defined_anew_forms_the_statement_again():
    x, y, w = least_squares()
    ctx = ag.AutogradContext()
    register(ctx, x, y, w)
    ctx.sql("CREATE VIEW scaled AS SELECT s, i, v FROM x").collect()
    step = BACKWARD.replace("FROM x JOIN w", "FROM scaled x JOIN w")
    ctx.sql(step).collect()
    np.testing.assert_allclose(gradients(ctx), analytic(x, y, w), rtol=1e-12, atol=1e-14)
    ctx.sql("CREATE OR REPLACE VIEW scaled AS SELECT s, i, 3 * v AS v FROM x").collect()
    ctx.sql(step).collect()
    np.testing.assert_allclose(gradients(ctx), analytic(3 * x, y, w), rtol=1e-12, atol=1e-14)
    assert ag.kept_statistics(ctx)["formed"] == 2


def test_a_dataframe_reads_the_tables_of_when_it_was_made():
    """Two DataFrames of the same statement, made before and after w changes,
    each read their own w, collected in either order."""
    x, y, w = least_squares()
    query = BACKWARD.split("AS\n", 1)[1] + " ORDER BY i"
    ctx = ag.AutogradContext()
    register(ctx, x, y, w)
    before = ctx.sql(query)
    w2 = w + 1.0
    register(ctx, x, y, w2)
    after = ctx.sql(query)
    np.testing.assert_allclose(after.to_pydict()["g"], analytic(x, y, w2), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(before.to_pydict()["g"], analytic(x, y, w), rtol=1e-12, atol=1e-14)


def test_an_open_stream_and_the_statement_beside_it_read_their_own_tables():
    """The loss reads a scalar subquery, whose results DataFusion's operator
    shares with its copies: a statement sent while the stream of another is
    open reads its own."""
    x, y, w = least_squares()
    query = (
        BACKWARD.split("AS\n", 1)[1].replace("SELECT AVG(", "SELECT (SELECT MAX(c) FROM scale) * AVG(")
        + " ORDER BY i"
    )
    ctx = ag.AutogradContext()
    register(ctx, x, y, w)
    ctx.register_record_batches("scale", [[pa.RecordBatch.from_pydict({"c": [2.0]})]])
    ctx.sql(query).collect()
    stream = ctx.sql(query).execute_stream()
    register(ctx, x, y, w + 2.0)
    ctx.deregister_table("scale")
    ctx.register_record_batches("scale", [[pa.RecordBatch.from_pydict({"c": [3.0]})]])
    beside = ctx.sql(query).to_pydict()["g"]
    np.testing.assert_allclose(beside, 3.0 * analytic(x, y, w + 2.0), rtol=1e-12, atol=1e-14)
    running = pa.Table.from_batches([batch.to_pyarrow() for batch in stream]).to_pydict()
    np.testing.assert_allclose(running["g"], 2.0 * analytic(x, y, w), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("keep_plans", [True, False])
def test_keeping_plans_can_be_turned_off(keep_plans):
    x, y, w = least_squares()
    ctx = ag.register(SessionContext(), keep_plans=keep_plans)
    register(ctx, x, y, w)
    for _ in range(2):
        ctx.sql(BACKWARD).collect()
        np.testing.assert_allclose(gradients(ctx), analytic(x, y, w), rtol=1e-12, atol=1e-14)
    expected = {"formed": 1, "reused": 1, "planned": 1, "copied": 1} if keep_plans else dict.fromkeys(
        ("formed", "reused", "planned", "copied"), 0
    )
    assert ag.kept_statistics(ctx) == expected
