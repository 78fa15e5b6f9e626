"""Curve fitting by gradient descent, each fit one recursive SQL statement.

Two models are fitted to noisy samples by minimising the mean squared error:

* a line, y ≈ a·x + b (convex; numpy's ``lstsq`` gives the optimum);
* an exponential decay, y ≈ a·exp(b·x) (nonlinear in b; Gauss–Newton in numpy
  gives the optimum).

Each fit is a single ``WITH RECURSIVE`` statement (``sql/fit/line.sql``,
``sql/fit/decay.sql``). The recursive term joins the current parameters with
every point, takes ``AVG(grad(loss, fit.a))`` and ``AVG(grad(loss, fit.b))``
and steps against them; the final SELECT returns every step's parameters and
loss, ordered by step. That trajectory is checked
against gradient descent in numpy with the same start, learning rate and number
of steps, whose gradient is written out by hand, so the two share nothing but
the data. They must agree to a relative 1e-9 at every step (``compare.RTOL``).

Run from the repository root::

    .venv/bin/python -m benchmarks.fit            # 10 000 points, 1 000 steps
    .venv/bin/python -m benchmarks.fit --quick    # 50 points, 100 steps
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
from datafusion import SessionContext

from benchmarks.cli import arguments
from benchmarks.compare import check, max_relative_difference
from benchmarks.sql import statement
from benchmarks.timing import timed
from datafusion_autograd import AutogradContext

SEED = 0

Array = np.ndarray


@dataclass(frozen=True)
class Problem:
    """A model with parameters (a, b), fitted to points (x, y) by gradient descent."""

    formula: str
    # The whole descent in SQL: every step's (a, b, loss) from the tables points, start and hyper.
    descent_sql: str
    predict: Callable[[Array, Array], Array]
    # ∇ of the mean squared error with respect to (a, b), derived by hand.
    gradient: Callable[[Array, Array, Array], Array]
    # The exact minimiser of the mean squared error, found without gradient descent.
    optimum: Callable[[Array, Array], Array]
    optimum_method: str
    truth: tuple[float, float]
    noise: float
    start: tuple[float, float]
    lr: float


def line(params: Array, x: Array) -> Array:
    a, b = params
    return a * x + b


def line_gradient(params: Array, x: Array, y: Array) -> Array:
    """∇ mean((a·x + b − y)²)."""
    residual = line(params, x) - y
    return np.array([np.mean(2 * residual * x), np.mean(2 * residual)])


def line_optimum(x: Array, y: Array) -> Array:
    solution, *_ = np.linalg.lstsq(np.column_stack([x, np.ones_like(x)]), y, rcond=None)
    return solution


def decay(params: Array, x: Array) -> Array:
    a, b = params
    return a * np.exp(b * x)


def decay_gradient(params: Array, x: Array, y: Array) -> Array:
    """∇ mean((a·exp(b·x) − y)²)."""
    a, b = params
    exponential = np.exp(b * x)
    residual = a * exponential - y
    return np.array([np.mean(2 * residual * exponential), np.mean(2 * residual * a * x * exponential)])


def decay_optimum(x: Array, y: Array, iterations: int = 50) -> Array:
    """Gauss–Newton on the residuals, from a least-squares fit of ln y where y > 0."""
    positive = y > 0
    slope, intercept = line_optimum(x[positive], np.log(y[positive]))
    params = np.array([np.exp(intercept), slope])
    for _ in range(iterations):
        a, b = params
        exponential = np.exp(b * x)
        jacobian = np.column_stack([exponential, a * x * exponential])
        step, *_ = np.linalg.lstsq(jacobian, y - a * exponential, rcond=None)
        params = params + step
    return params


LINE = Problem(
    formula="y = a·x + b",
    descent_sql=statement("fit/line"),
    predict=line,
    gradient=line_gradient,
    optimum=line_optimum,
    optimum_method="numpy lstsq",
    truth=(2.5, -1.0),
    noise=0.1,
    start=(0.0, 0.0),
    lr=0.5,
)

DECAY = Problem(
    formula="y = a·exp(b·x)",
    descent_sql=statement("fit/decay"),
    predict=decay,
    gradient=decay_gradient,
    optimum=decay_optimum,
    optimum_method="Gauss–Newton",
    truth=(2.0, -1.5),
    noise=0.01,
    start=(1.0, 0.0),
    lr=0.5,
)

PROBLEMS = {"line": LINE, "decay": DECAY}


@dataclass
class Trajectory:
    """Parameters (one row per step, starting point first), loss per step, and time taken."""

    params: Array
    losses: Array
    seconds: float


def sample(problem: Problem, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
    """``n`` points with x uniform in [0, 1] and Gaussian noise on the true model."""
    x = rng.uniform(0.0, 1.0, n)
    y = problem.predict(np.array(problem.truth), x) + rng.normal(0.0, problem.noise, n)
    return x, y


def register(ctx: SessionContext, name: str, columns: dict) -> None:
    ctx.register_record_batches(name, [[pa.RecordBatch.from_pydict(columns)]])


def sql_descent(problem: Problem, x: Array, y: Array, steps: int) -> Trajectory:
    """The recursive CTE's trajectory; the time covers planning and execution."""
    ctx = AutogradContext()
    register(ctx, "points", {"x": x, "y": y})
    register(ctx, "start", {"a": [problem.start[0]], "b": [problem.start[1]]})
    register(ctx, "hyper", {"lr": [problem.lr], "steps": [steps]})
    result, seconds = timed(lambda: ctx.sql(problem.descent_sql).to_pydict())
    return Trajectory(np.column_stack([result["a"], result["b"]]), np.array(result["loss"]), seconds)


def numpy_descent(problem: Problem, x: Array, y: Array, steps: int) -> Trajectory:
    """The same descent with the hand-derived gradient; the time covers the steps only."""

    def descend() -> list[Array]:
        params = [np.array(problem.start, dtype=float)]
        for _ in range(steps):
            params.append(params[-1] - problem.lr * problem.gradient(params[-1], x, y))
        return params

    params, seconds = timed(descend)
    losses = np.array([np.mean((problem.predict(p, x) - y) ** 2) for p in params])
    return Trajectory(np.array(params), losses, seconds)


def fit(problem: Problem, points: int, steps: int, rng: np.random.Generator) -> dict:
    """Runs one problem in SQL and in numpy and checks them against each other step by step."""
    x, y = sample(problem, points, rng)
    sql = sql_descent(problem, x, y, steps)
    reference = numpy_descent(problem, x, y, steps)
    return {
        "points": points,
        "steps": steps,
        "sql_params": sql.params,
        "numpy_params": reference.params,
        "sql_losses": sql.losses,
        "numpy_losses": reference.losses,
        "max_rel_param_diff": check(
            f"{problem.formula}: (a, b), SQL vs numpy", max_relative_difference(sql.params, reference.params)
        ),
        "max_rel_loss_diff": check(
            f"{problem.formula}: loss, SQL vs numpy", max_relative_difference(sql.losses, reference.losses)
        ),
        "optimum": problem.optimum(x, y),
        "sql_seconds": sql.seconds,
        "numpy_seconds": reference.seconds,
    }


def report(problem: Problem, result: dict) -> None:
    a, b = result["sql_params"][-1]
    best_a, best_b = result["optimum"]
    true_a, true_b = problem.truth
    print(f"{problem.formula}: {result['points']} points, {result['steps']} steps, lr {problem.lr}")
    print(f"  SQL descent   a = {a:+.10f}  b = {b:+.10f}  (mean squared error {result['sql_losses'][-1]:.4e})")
    print(f"  {problem.optimum_method:<13} a = {best_a:+.10f}  b = {best_b:+.10f}")
    print(f"  truth         a = {true_a:+.10f}  b = {true_b:+.10f}")
    print(
        f"  SQL vs numpy descent, over all {result['steps'] + 1} steps: max relative difference "
        f"{result['max_rel_param_diff']:.1e} in (a, b), {result['max_rel_loss_diff']:.1e} in the loss"
    )
    print(f"  wall time: SQL {result['sql_seconds']:.3f} s, numpy {result['numpy_seconds']:.3f} s")


def main(quick: bool = False) -> dict:
    """Fits both problems; returns, per problem, the trajectories, differences and timings."""
    points, steps = (50, 100) if quick else (10_000, 1_000)
    rng = np.random.default_rng(SEED)
    results = {}
    for name, problem in PROBLEMS.items():
        results[name] = fit(problem, points, steps, rng)
        report(problem, results[name])
    return results


if __name__ == "__main__":
    main(**arguments(__doc__, quick="50 points and 100 steps"))
