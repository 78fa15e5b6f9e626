"""``gradient()``: gradients of whole queries through the stock PyPI host, against numpy.

Closed forms for linear, logistic and softmax regression and the digits MLP,
central differences of the loss for the operators the bridge has to print as
SQL, and the same answers at 1 and 8 partitions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import xarray as xr
import xarray_sql
from datafusion import SessionConfig, SessionContext, col
from datafusion import functions as f

import datafusion_autograd as ag
from benchmarks import mlp_digits
from benchmarks.sql import statements

FEATURES, SAMPLES, CLASSES = 5, 12, 3


def context(partitions: int = 4) -> SessionContext:
    return ag.register(SessionContext(SessionConfig().with_target_partitions(partitions)))


def table(ctx: SessionContext, name: str, columns: dict[str, np.ndarray]) -> None:
    ctx.register_record_batches(name, [[pa.RecordBatch.from_pydict(columns)]])


def long_form(matrix: np.ndarray, row: str, column: str, value: str) -> dict[str, np.ndarray]:
    rows, columns = np.indices(matrix.shape)
    return {row: rows.ravel(), column: columns.ravel(), value: matrix.ravel()}


def gradient_of(ctx: SessionContext, loss: str, wrt: str, *keys: str) -> dict[str, np.ndarray]:
    """``SELECT * FROM gradient(loss, wrt)`` through the bridge, ordered by ``keys``."""
    quoted = loss.replace("'", "''")
    order = ", ".join(keys)
    result = ctx.sql(f"SELECT * FROM gradient('{quoted}', '{wrt}') ORDER BY {order}").to_pydict()
    return {name: np.array(values) for name, values in result.items()}


@pytest.fixture
def regression() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(SAMPLES, FEATURES))
    return {
        "x": x,
        "w": rng.normal(size=FEATURES),
        "m": rng.normal(size=(FEATURES, CLASSES)),
        "b": rng.normal(size=CLASSES),
        "y": x @ rng.normal(size=FEATURES) + rng.normal(scale=0.1, size=SAMPLES),
        "sign": rng.choice([-1.0, 1.0], size=SAMPLES),
        "label": rng.integers(0, CLASSES, size=SAMPLES),
    }


def regression_context(data: dict[str, np.ndarray], partitions: int = 4) -> SessionContext:
    ctx = context(partitions)
    table(ctx, "w", {"i": np.arange(FEATURES), "w": data["w"]})
    table(ctx, "m", long_form(data["m"], "i", "k", "w"))
    table(ctx, "b", {"k": np.arange(CLASSES), "b": data["b"]})
    table(ctx, "x", long_form(data["x"], "s", "i", "v"))
    onehot = np.eye(CLASSES)[data["label"]]
    table(ctx, "y", {"s": np.arange(SAMPLES), "t": data["y"], "sign": data["sign"], "c": data["label"]})
    table(ctx, "labels", long_form(onehot, "s", "k", "onehot"))
    return ctx


LINEAR = """
SELECT AVG(power(p.z - y.t, 2)) FROM
  (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p
  JOIN y ON p.s = y.s
"""

LOGISTIC = """
SELECT AVG(ln(1 + exp(-y.sign * (p.z + b.b)))) FROM
  (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p
  JOIN y ON p.s = y.s CROSS JOIN (SELECT b FROM b WHERE k = 0) b
"""

SOFTMAX = """
WITH z AS (SELECT x.s, m.k, SUM(x.v * m.w) + b.b AS z
           FROM x JOIN m ON x.i = m.i JOIN b ON m.k = b.k GROUP BY x.s, m.k, b.b),
     shifted AS (SELECT s, k, z - MAX(z) OVER (PARTITION BY s) AS z FROM z),
     logp AS (SELECT s, k, z - ln(SUM(exp(z)) OVER (PARTITION BY s)) AS logp FROM shifted)
SELECT -SUM(l.onehot * logp.logp) / 12.0 FROM logp JOIN labels l ON logp.s = l.s AND logp.k = l.k
"""


def test_linear_regression_closed_form(regression):
    ctx = regression_context(regression)
    x, w, y = regression["x"], regression["w"], regression["y"]
    got = gradient_of(ctx, LINEAR, "w.w", "i")
    np.testing.assert_allclose(got["grad"], 2 / SAMPLES * x.T @ (x @ w - y), rtol=1e-12)
    np.testing.assert_array_equal(got["w"], w)


def test_logistic_regression_closed_form(regression):
    ctx = regression_context(regression)
    x, w, sign = regression["x"], regression["w"], regression["sign"]
    bias = regression["b"][0]
    margin = sign * (x @ w + bias)
    # d/dz ln(1 + exp(-m)) = -sign · σ(-m)
    dz = -sign / (1 + np.exp(margin)) / SAMPLES
    np.testing.assert_allclose(gradient_of(ctx, LOGISTIC, "w.w", "i")["grad"], x.T @ dz, rtol=1e-12)
    bias_grad = gradient_of(ctx, LOGISTIC, "b.b", "k")["grad"]
    np.testing.assert_allclose(bias_grad, [dz.sum(), 0.0, 0.0], rtol=1e-12, atol=1e-300)


def softmax_delta(regression) -> np.ndarray:
    """∂SOFTMAX/∂z per sample and class, in numpy: (softmax − one-hot) / samples."""
    z = regression["x"] @ regression["m"] + regression["b"]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return (p - np.eye(CLASSES)[regression["label"]]) / SAMPLES


def test_softmax_regression_closed_form(regression):
    ctx = regression_context(regression)
    x, delta = regression["x"], softmax_delta(regression)
    got = gradient_of(ctx, SOFTMAX, "m.w", "i", "k")["grad"].reshape(FEATURES, CLASSES)
    np.testing.assert_allclose(got, x.T @ delta, rtol=1e-10)
    np.testing.assert_allclose(gradient_of(ctx, SOFTMAX, "b.b", "k")["grad"], delta.sum(axis=0), rtol=1e-10)


def test_each_table_is_looked_up_once_per_gradient(regression):
    """Planning asks the host for a table at every scan of it; each answer is a
    call into Python, and a table's size a query of the host's planner, so the
    engine asks once per name."""
    from collections import Counter

    from datafusion_autograd._native import gradients
    from datafusion_autograd.tables import catalog, fetcher

    ctx = regression_context(regression)
    relations, fetch = catalog(ctx), fetcher(ctx)
    asked: Counter = Counter()
    fetched: Counter = Counter()

    def counted_relation(name):
        asked[name] += 1
        return relations(name)

    def counted_fetch(name):
        fetched[name] += 1
        return fetch(name)

    (table,) = gradients(SOFTMAX, ["m.w"], counted_relation, counted_fetch)
    assert asked and fetched
    assert max(asked.values()) == 1, asked
    assert max(fetched.values()) == 1, fetched
    x, delta = regression["x"], softmax_delta(regression)
    got = ctx.read_table(table).sort(col("i"), col("k")).to_pydict()["grad"]
    np.testing.assert_allclose(np.reshape(got, (FEATURES, CLASSES)), x.T @ delta, rtol=1e-10)


def test_mlp_gradient_equals_backpropagation():
    """The digits network's backward statement — grad over its loss CTE, by four tables —
    against numpy's hand-derived backward pass, and against ag.gradients of the same loss."""
    split = mlp_digits.load_split()
    rng = np.random.default_rng(1)
    params = mlp_digits.init_params(rng)
    schedule = mlp_digits.batch_schedule(rng, len(split.train_x), mlp_digits.QUICK)
    network = mlp_digits.GradientMlp(params, split, schedule, lr=1.0)
    (backward,) = statements("mlp_gradient/backward")
    network.ctx.sql(backward).collect()
    found = network.gradients()
    reference = mlp_digits.NumpyMlp(params, lr=1.0)
    batch = schedule[0]
    reference.step(split.train_x[batch], mlp_digits.one_hot(split.train_y[batch]))
    expected = {name: params[name] - reference.params[name] for name in params}
    for name in params:
        scale = np.max(np.abs(expected[name]))
        np.testing.assert_allclose(found[name], expected[name], rtol=1e-9, atol=1e-12 * scale, err_msg=name)
    # The loss CTE on its own, through ag.gradients: the same four tables from one pass.
    ctes = backward[backward.index("WITH batch AS") : backward.index("SELECT 'w1'")]
    loss = f"{ctes} SELECT l FROM loss"
    tables = {"w1.w": ("i", "j"), "b1.b": ("j",), "w2.w": ("j", "k"), "b2.b": ("k",)}
    by_table = ag.gradients(network.ctx, loss, list(tables))
    for parameter, keys in tables.items():
        got = by_table[parameter].to_pydict()
        name = parameter.split(".")[0]
        rebuilt = np.full_like(expected[name], np.nan)
        for *index, grad in zip(*(got[k] for k in keys), got["grad"]):
            rebuilt[tuple(index)] = grad
        scale = np.max(np.abs(found[name]))
        np.testing.assert_allclose(rebuilt, found[name], rtol=1e-9, atol=1e-12 * scale, err_msg=parameter)


# Losses for the operators the bridge prints as SQL, over w(i, w) and x(s, i, v).
OPERATORS = [
    "SELECT SUM(w * a + mn + mx) FROM (SELECT w, AVG(w) OVER () AS a, "
    "MIN(w * (i + 1)) OVER (PARTITION BY i % 2) AS mn, MAX(sin(w)) OVER (PARTITION BY i % 2) AS mx FROM w) t",
    "SELECT SUM(v * v) FROM (SELECT w * 2 AS v FROM w UNION ALL SELECT w * i AS v FROM w WHERE i > 0) u",
    "SELECT SUM(power(w - (SELECT AVG(w) FROM w), 2)) FROM w",
    "WITH t AS (SELECT i, w * 3 AS w3 FROM w) SELECT SUM(q.w3 * q.w3 * r.w3) FROM t q JOIN t r ON q.i = r.i",
    "SELECT SUM(m) FROM (SELECT x.s, MAX(x.v * w.w) AS m FROM x JOIN w ON x.i = w.i GROUP BY x.s) t",
    "SELECT SUM(tripled * tripled) FROM tripled_weights",
]


@pytest.mark.parametrize("loss", OPERATORS)
def test_operators_match_finite_differences(regression, loss):
    ctx = regression_context(regression)
    ctx.sql("CREATE VIEW tripled_weights AS SELECT i, 3 * w AS tripled FROM w").collect()
    got = gradient_of(ctx, loss, "w.w", "i")["grad"]
    w, h = regression["w"], 1e-6

    def value(weights: np.ndarray) -> float:
        shifted = context()
        table(shifted, "w", {"i": np.arange(FEATURES), "w": weights})
        table(shifted, "x", long_form(regression["x"], "s", "i", "v"))
        shifted.sql("CREATE VIEW tripled_weights AS SELECT i, 3 * w AS tripled FROM w").collect()
        return float(next(iter(shifted.sql(loss).to_pydict().values()))[0])

    for i in range(FEATURES):
        up, down = w.copy(), w.copy()
        up[i] += h
        down[i] -= h
        assert got[i] == pytest.approx((value(up) - value(down)) / (2 * h), rel=1e-5, abs=1e-6), i
    assert np.any(got != 0.0)


def test_same_gradient_at_one_and_eight_partitions(regression):
    one = gradient_of(regression_context(regression, 1), SOFTMAX, "m.w", "i", "k")["grad"]
    eight = gradient_of(regression_context(regression, 8), SOFTMAX, "m.w", "i", "k")["grad"]
    np.testing.assert_allclose(one, eight, rtol=1e-12)


def test_forms_of_the_call(regression):
    ctx = regression_context(regression)
    x, w, y = regression["x"], regression["w"], regression["y"]
    expected = 2 / SAMPLES * x.T @ (x @ w - y)
    quoted = LINEAR.replace("'", "''")
    aliased = ctx.sql(f"SELECT g.i, g.grad FROM gradient('{quoted}', 'w.w') AS g ORDER BY g.i").to_pydict()
    np.testing.assert_allclose(aliased["grad"], expected, rtol=1e-12)
    joined = ctx.sql(
        f"SELECT w.i, w.w - 0.5 * gradient.grad AS w FROM w JOIN gradient('{quoted}', 'w.w') ON w.i = gradient.i "
        "ORDER BY w.i"
    ).to_pydict()
    np.testing.assert_allclose(joined["w"], w - 0.5 * expected, rtol=1e-12)
    ctx.sql(f"CREATE TABLE w_next AS SELECT i, w - 0.5 * grad AS w FROM gradient('{quoted}', 'w.w')").collect()
    stepped = ctx.sql("SELECT w FROM w_next ORDER BY i").to_pydict()["w"]
    np.testing.assert_allclose(stepped, w - 0.5 * expected, rtol=1e-12)
    from_dataframe = ag.gradient(ctx, ctx.table("w").aggregate([], [f.sum(col("w") * col("w"))]), "w.w")
    np.testing.assert_allclose(from_dataframe.sort(col("i")).to_pydict()["grad"], 2 * w, rtol=1e-12)
    # The stages were tables of the context only while the statement was planned.
    assert not [name for name in ctx.catalog().schema().names() if name.startswith("__ag")]


def test_errors_name_the_operator(regression):
    ctx = regression_context(regression)
    with pytest.raises(ag.AutogradError, match="cannot differentiate through Limit"):
        ctx.sql("SELECT * FROM gradient('SELECT SUM(w) FROM (SELECT w FROM w LIMIT 2) t', 'w.w')")
    with pytest.raises(ag.AutogradError, match="table 'nope' not found"):
        ctx.sql("SELECT * FROM gradient('SELECT SUM(w) FROM w', 'nope.w')")
    with pytest.raises(ag.AutogradError, match="takes two string literals"):
        ctx.sql("SELECT * FROM gradient('SELECT SUM(w) FROM w')")


def test_xarray_parameters_get_their_gradient_as_a_dataset():
    """A parameter field from an xarray.Dataset, its gradient back on the same dimensions."""
    rng = np.random.default_rng(3)
    lat, lon, time = np.linspace(-30, 30, 4), np.linspace(0, 90, 5), np.arange(6)
    weights = xr.Dataset({"w": (("lat", "lon"), rng.normal(size=(4, 5)))}, coords={"lat": lat, "lon": lon})
    observed = xr.Dataset(
        {"x": (("time", "lat", "lon"), rng.normal(size=(6, 4, 5))), "y": (("time", "lat", "lon"), rng.normal(size=(6, 4, 5)))},
        coords={"time": time, "lat": lat, "lon": lon},
    )
    ctx = ag.register(xarray_sql.XarrayContext())
    ctx.from_dataset("weights", weights)
    ctx.from_dataset("observed", observed)
    loss = "SELECT AVG(power(w.w * o.x - o.y, 2)) FROM observed o JOIN weights w ON o.lat = w.lat AND o.lon = w.lon"
    result = ctx.sql(f"SELECT lat, lon, w, grad FROM gradient('{loss}', 'weights.w')")
    grad = result.to_dataset(dims=["lat", "lon"]).sortby(["lat", "lon"]).grad.transpose("lat", "lon")
    residual = weights.w * observed.x - observed.y
    expected = (2 * residual * observed.x).mean("time") / (4 * 5)
    xr.testing.assert_allclose(grad, expected.transpose("lat", "lon").rename("grad"))


def null_context(partitions: int = 4) -> SessionContext:
    """``w(i, w) = (0, 0.5), (1, -0.3)`` and ``x(i, v) = (0, 0.4), (1, NULL), (1, 0.2)``."""
    ctx = context(partitions)
    table(ctx, "w", {"i": np.array([0, 1]), "w": np.array([0.5, -0.3])})
    ctx.register_record_batches("x", [[pa.RecordBatch.from_pydict({"i": [0, 1, 1], "v": [0.4, None, 0.2]})]])
    return ctx


def differences(loss: str, w: np.ndarray, make) -> np.ndarray:
    """Central differences of ``loss``, re-run in a plain context with each w moved in turn."""
    h, out = 1e-6, []
    for k in range(len(w)):
        values = []
        for step in (h, -h):
            moved = w.copy()
            moved[k] += step
            plain = SessionContext()
            make(plain, moved)
            values.append(next(iter(plain.sql(loss).to_pydict().values()))[0])
        out.append((values[0] - values[1]) / (2 * h))
    return np.array(out)


NULL_CASES = [
    ("SELECT SUM(q.z) FROM (SELECT x.v * w.w AS z FROM x JOIN w ON x.i = w.i) q", [0.4, 0.2]),
    ("SELECT SUM(q.z) FROM (SELECT x.v * w.w AS z FROM x CROSS JOIN w) q", [0.6, 0.6]),
    (
        "SELECT SUM(q.z) FROM (SELECT x.v * w.w AS z FROM x JOIN w ON x.i = w.i WHERE x.v IS NULL OR x.v > 0) q",
        [0.4, 0.2],
    ),
    (
        "SELECT SUM(q.z) FROM (SELECT w.w AS z FROM w UNION ALL SELECT q2.z FROM "
        "(SELECT w.w - AVG(w.w) OVER () AS z FROM w) q2 WHERE q2.z > 5) q",
        [1.0, 1.0],
    ),
    (
        "SELECT SUM(q.z) FROM (SELECT x.v * w.w - AVG(x.v * w.w) OVER (PARTITION BY x.i) AS z "
        "FROM x JOIN w ON x.i = w.i) q",
        None,
    ),
]


@pytest.mark.parametrize("loss, expected", NULL_CASES)
def test_rows_that_reach_nothing_get_zero_not_null(loss, expected):
    """A row a reduction does not count (a NULL argument), or a window filtered away
    further up, passes nothing: its gradient is a number, as differences say."""
    w = np.array([0.5, -0.3])

    def make(ctx, weights):
        table(ctx, "w", {"i": np.array([0, 1]), "w": weights})
        ctx.register_record_batches("x", [[pa.RecordBatch.from_pydict({"i": [0, 1, 1], "v": [0.4, None, 0.2]})]])

    reference = differences(loss, w, make)
    for partitions in (1, 8):
        got = gradient_of(null_context(partitions), loss, "w.w", "i")["grad"]
        assert None not in list(got), got
        np.testing.assert_allclose(got.astype(float), reference, rtol=1e-6, atol=1e-8)
        if expected is not None:
            np.testing.assert_allclose(got.astype(float), expected, rtol=1e-12)


def test_a_null_loss_has_a_null_gradient():
    ctx = null_context()
    loss = "SELECT SUM(w.w) * MAX(x.v) FROM w CROSS JOIN x WHERE x.v IS NULL"
    assert ctx.sql(loss).to_pydict() != {} and next(iter(ctx.sql(loss).to_pydict().values())) == [None]
    assert list(gradient_of(ctx, loss, "w.w", "i")["grad"]) == [None, None]


VALUES_AND_SELECTIONS = [
    "SELECT SUM(w.w * t.c) FROM w JOIN (VALUES (0, 1.5), (1, -0.5)) AS t(i, c) ON w.i = t.i",
    "SELECT SUM(w * w) * (SELECT COUNT(*) FROM (VALUES (1), (2)) AS v(k)) FROM w",
    "SELECT (SELECT SUM(w * w) FROM w) * 2.0",
    "SELECT SUM(w * w) FROM w WHERE w.i IN (SELECT i FROM x WHERE v > 0)",
    "SELECT SUM(w * w) FROM w WHERE w.i NOT IN (SELECT i FROM x WHERE i > 2 AND v > 0)",
    "SELECT SUM(w * r) FROM (SELECT w, ROW_NUMBER() OVER (ORDER BY i) AS r FROM w) t",
    "SELECT SUM(w * r) FROM (SELECT w, RANK() OVER (ORDER BY w) AS r FROM w) t",
    "SELECT SUM(coalesce(w.w, 1.0) * x.v) FROM x LEFT JOIN w ON x.i = w.i AND w.i < 2",
]


@pytest.mark.parametrize("loss", VALUES_AND_SELECTIONS)
def test_values_selections_and_losses_without_from(regression, loss):
    """``VALUES`` anywhere, a loss without ``FROM``, ``IN``/``NOT IN`` subqueries, ranks and
    outer joins, through the bridge and ``ag.gradient``, against differences."""
    ctx = regression_context(regression)
    w = regression["w"]

    def make(plain, weights):
        table(plain, "w", {"i": np.arange(FEATURES), "w": weights})
        table(plain, "x", long_form(regression["x"], "s", "i", "v"))

    reference = differences(loss, w, make)
    np.testing.assert_allclose(gradient_of(ctx, loss, "w.w", "i")["grad"], reference, rtol=1e-5, atol=1e-6)
    frame = ag.gradient(ctx, loss, "w.w").sort(col("i")).to_pydict()["grad"]
    np.testing.assert_allclose(frame, reference, rtol=1e-5, atol=1e-6)


def test_planning_and_explain_compute_nothing():
    """``ctx.sql``, ``df.schema()``, ``df.logical_plan()``, ``EXPLAIN`` and ``ag.gradient``
    compute nothing: on a loss that takes a while, each is a small fraction of running it."""
    import time

    ctx = context(2)
    n = 1500
    table(ctx, "x", {"i": np.arange(n) % 16, "v": np.sin(np.arange(n) * 0.37)})
    table(ctx, "w", {"i": np.arange(16), "w": np.arange(16) / 16.0})
    loss = "SELECT SUM(a.v * b.v * w.w * w.w) FROM x a CROSS JOIN x b JOIN w ON a.i = w.i"
    query = f"SELECT i, grad FROM gradient('{loss}', 'w.w')"

    def seconds(action) -> float:
        start = time.perf_counter()
        action()
        return time.perf_counter() - start

    def plan() -> None:
        df = ctx.sql(query)
        df.schema()
        df.logical_plan()

    planned = seconds(plan)
    explained = seconds(lambda: ctx.sql(f"EXPLAIN {query}").collect())
    built = seconds(lambda: ag.gradient(ctx, loss, "w.w").schema())
    ran = seconds(lambda: ctx.sql(query).collect())
    assert max(planned, explained, built) * 10 < ran, (planned, explained, built, ran)
