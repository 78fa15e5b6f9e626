"""Newton's method with conjugate gradients in SQL, through Hessian-vector products only.

L2-regularised logistic regression on scikit-learn's breast-cancer data (569 samples × 30
features, standardised), the loss of ``LogisticRegression(C=1)``: Σ ln(1 + e^z) − y·z over
the samples plus ½‖w‖² over the coefficients (``sql/newton_cg/loss.sql``; the intercept is
the weight of a constant feature and is not penalised). The coefficients live in a table
``coef(j, w)``; the loss is SQL and nothing else is.

Each outer iteration of Newton–CG takes the gradient g with ``ag.gradient`` and solves
H·p = −g by conjugate gradients, where every product H·d is one ``ag.hvp`` call along the
direction d, a table ``direction(j, tangent)``: the Hessian is never formed, in SQL or
anywhere. The inner solve stops at a residual of min(½, √(‖g‖/‖g₀‖))·‖g‖ (a truncated Newton
step, scale-free, superlinear near the optimum); a backtracking line search on the loss (Armijo) takes the
step. The 31-vectors of the conjugate-gradient recurrences are numpy arrays.

The reference is scikit-learn's ``LogisticRegression(solver="newton-cg")`` with the same
penalty, run to a tight tolerance; the coefficients must equal it to a relative 1e-6 within
15 outer iterations. Beside it: how many iterations plain gradient descent (step 1/L, L the
gradient's Lipschitz constant, in numpy) takes to the same tolerance.

Run from the repository root::

    .venv/bin/python -m benchmarks.newton_cg
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from datafusion import SessionContext, col
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import datafusion_autograd as ag
from benchmarks.sql import statement
from benchmarks.timing import timed

LOSS = statement("newton_cg/loss")
# The loss's penalty is ½‖w‖² — scikit-learn's C = 1.
C = 1.0
MAX_OUTER = 15
# The coefficients' tolerance against scikit-learn, and the gradient norm Newton stops at,
# relative to the first.
RTOL = 1e-6
GTOL = 1e-13
Array = np.ndarray


@dataclass(frozen=True)
class Problem:
    x: Array  # samples × (features + 1), the last column the constant 1
    y: Array  # 0 or 1

    @property
    def penalised(self) -> Array:
        """1 for a coefficient, 0 for the intercept."""
        return np.r_[np.ones(self.x.shape[1] - 1), 0.0]


def load() -> Problem:
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    return Problem(np.hstack([x, np.ones((len(x), 1))]), y.astype(float))


def reference(problem: Problem) -> Array:
    """scikit-learn's coefficients and intercept, converged far past ``RTOL``."""
    model = LogisticRegression(solver="newton-cg", C=C, tol=1e-14, max_iter=1000)
    model.fit(problem.x[:, :-1], problem.y)
    return np.r_[model.coef_.ravel(), model.intercept_]


class SqlProblem:
    """The data and the coefficients as tables of one context; the loss and its derivatives in SQL."""

    def __init__(self, problem: Problem) -> None:
        self.ctx = ag.register(SessionContext())
        samples, features = np.indices(problem.x.shape)
        self._table("x", s=samples.ravel(), j=features.ravel(), v=problem.x.ravel())
        self._table("y", s=np.arange(len(problem.y)), y=problem.y)
        self.size = problem.x.shape[1]
        self.hvps = self.losses = 0

    def set(self, w: Array) -> None:
        self._table("coef", j=np.arange(self.size), w=w)

    def loss(self) -> float:
        self.losses += 1
        return float(self.ctx.sql(LOSS).to_pydict()["loss"][0])

    def gradient(self) -> Array:
        return self._column(ag.gradient(self.ctx, LOSS, "coef.w"), "grad")

    def hvp(self, d: Array) -> Array:
        """∇²loss · d, forward mode through the gradient's plans."""
        self.hvps += 1
        self._table("direction", j=np.arange(self.size), tangent=d)
        return self._column(ag.hvp(self.ctx, LOSS, "coef.w", "SELECT j, tangent FROM direction"), "hvp")

    def _table(self, name: str, **columns: Array) -> None:
        self.ctx.deregister_table(name)
        self.ctx.register_record_batches(name, [[pa.RecordBatch.from_pydict(columns)]])

    @staticmethod
    def _column(frame, name: str) -> Array:
        return np.array(frame.sort(col("j")).to_pydict()[name])


def conjugate_gradients(hvp, g: Array, tolerance: float) -> tuple[Array, int]:
    """p with ‖H·p + g‖ ≤ tolerance (or a direction of non-positive curvature's start), and the products taken."""
    p, r = np.zeros_like(g), -g
    d, rr = r.copy(), r @ r
    for k in range(1, 2 * len(g) + 1):
        hd = hvp(d)
        curvature = d @ hd
        if curvature <= 0:
            return (p if k > 1 else d), k
        alpha = rr / curvature
        p, r = p + alpha * d, r - alpha * hd
        rr, previous = r @ r, rr
        if np.sqrt(rr) <= tolerance:
            return p, k
        d = r + (rr / previous) * d
    return p, 2 * len(g)


@dataclass
class Iteration:
    loss: float
    gradient_norm: float
    products: int
    step: float
    max_rel_coef_diff: float


def newton_cg(sql: SqlProblem, want: Array) -> tuple[Array, list[Iteration]]:
    w = np.zeros(sql.size)
    sql.set(w)
    history: list[Iteration] = []
    first = None
    for _ in range(MAX_OUTER):
        g = sql.gradient()
        norm = float(np.linalg.norm(g))
        first = first or norm
        if norm <= GTOL * first:
            break
        p, products = conjugate_gradients(sql.hvp, g, min(0.5, np.sqrt(norm / first)) * norm)
        # Armijo backtracking on the loss, from the full Newton step.
        loss, step, slope = sql.loss(), 1.0, g @ p
        while True:
            sql.set(w + step * p)
            if sql.loss() <= loss + 1e-4 * step * slope or step < 1e-10:
                break
            step /= 2
        w = w + step * p
        history.append(Iteration(loss, norm, products, step, relative_difference(w, want)))
    return w, history


def relative_difference(got: Array, want: Array) -> float:
    return float(np.max(np.abs(got - want) / np.abs(want)))


def gradient_descent_iterations(problem: Problem, want: Array, limit: int = 2_000_000) -> int | None:
    """Steps of 1/L from 0 until the coefficients equal ``want`` to ``RTOL``; None past ``limit``."""
    x, y, penalised = problem.x, problem.y, problem.penalised
    lipschitz = np.linalg.eigvalsh(x.T @ x).max() / 4 + 1.0
    w = np.zeros(x.shape[1])
    for k in range(1, limit + 1):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        w -= (x.T @ (p - y) + penalised * w) / lipschitz
        if relative_difference(w, want) <= RTOL:
            return k
    return None


def main() -> dict:
    """Newton–CG in SQL against scikit-learn, and gradient descent's count beside it."""
    problem = load()
    want = reference(problem)
    sql = SqlProblem(problem)
    (w, history), seconds = timed(newton_cg, sql, want)
    result = {
        "outer_iterations": len(history),
        "hessian_vector_products": sql.hvps,
        "loss_evaluations": sql.losses,
        "max_rel_coef_diff": relative_difference(w, want),
        "history": history,
        "coefficients": w,
        "reference": want,
        "seconds": seconds,
        "gradient_descent_iterations": gradient_descent_iterations(problem, want),
    }
    report(result)
    return result


def report(result: dict) -> None:
    print("outer  loss                 ‖g‖        products  step   max rel. diff. to scikit-learn")
    for k, it in enumerate(result["history"], 1):
        print(f"{k:5d}  {it.loss:.15e}  {it.gradient_norm:.2e}  {it.products:8d}  {it.step:.3f}  {it.max_rel_coef_diff:.1e}")
    print(
        f"Newton–CG in SQL: {result['outer_iterations']} outer iterations, "
        f"{result['hessian_vector_products']} Hessian-vector products, {result['loss_evaluations']} loss "
        f"evaluations, {result['seconds']:.1f} s; coefficients equal scikit-learn's to "
        f"{result['max_rel_coef_diff']:.1e} relative"
    )
    count = result["gradient_descent_iterations"]
    print(f"gradient descent (step 1/L, numpy) to the same tolerance: {count or 'more than 2,000,000'} iterations")


if __name__ == "__main__":
    main()
