"""The training demos in benchmarks/, run in quick mode.

``fit.py`` descends in one recursive SQL statement and ``mlp_digits.py`` trains a
neural network with one SQL statement per stage; both must follow their numpy
references step by step. The numpy references' hand-derived gradients are
themselves checked here against finite differences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from benchmarks import fit, mlp_digits, newton_cg
from benchmarks.compare import RTOL
from benchmarks.sql import statements


@pytest.fixture(scope="module")
def fits() -> dict:
    return fit.main(quick=True)


@pytest.fixture(scope="module")
def curves_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("curves")


@pytest.fixture(scope="module")
def training(curves_dir: Path) -> dict:
    return mlp_digits.main(quick=True, out=curves_dir)


def central_difference(
    function: Callable[[np.ndarray], float], point: np.ndarray, index: tuple[int, ...], h: float = 1e-6
) -> float:
    """∂function/∂point[index] by a central difference."""
    up, down = point.copy(), point.copy()
    up[index] += h
    down[index] -= h
    return (function(up) - function(down)) / (2 * h)


# --- fit.py -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["line", "decay"])
def test_fit_trajectory_equals_numpy_descent_at_every_step(fits: dict, name: str) -> None:
    result = fits[name]
    assert result["sql_params"].shape == (result["steps"] + 1, 2)
    np.testing.assert_allclose(result["sql_params"], result["numpy_params"], rtol=RTOL, atol=1e-15)
    np.testing.assert_allclose(result["sql_losses"], result["numpy_losses"], rtol=RTOL, atol=1e-15)
    assert result["max_rel_param_diff"] <= RTOL
    assert result["max_rel_loss_diff"] <= RTOL


@pytest.mark.parametrize("name", ["line", "decay"])
def test_fit_loss_decreases_towards_the_optimum(fits: dict, name: str) -> None:
    result = fits[name]
    assert np.all(np.diff(result["sql_losses"]) < 0)
    distance = np.linalg.norm(result["sql_params"] - result["optimum"], axis=1)
    assert distance[-1] < 0.01 * distance[0]


@pytest.mark.parametrize("name", ["line", "decay"])
def test_fit_reference_gradient_matches_finite_differences(name: str) -> None:
    problem = fit.PROBLEMS[name]
    x, y = fit.sample(problem, 30, np.random.default_rng(1))
    params = np.array([1.3, -0.7])

    def mse(p: np.ndarray) -> float:
        return float(np.mean((problem.predict(p, x) - y) ** 2))

    numeric = [central_difference(mse, params, (i,)) for i in range(2)]
    np.testing.assert_allclose(problem.gradient(params, x, y), numeric, rtol=1e-7)


# --- mlp_digits.py ----------------------------------------------------------------------------


@pytest.mark.parametrize("network", ["sql", "gradient"])
def test_mlp_loss_equals_numpy_at_every_step(training: dict, network: str) -> None:
    assert training["steps"] == mlp_digits.QUICK.max_steps
    assert len(training[f"{network}_losses"]) == len(training["numpy_losses"]) == training["steps"]
    np.testing.assert_allclose(training[f"{network}_losses"], training["numpy_losses"], rtol=RTOL, atol=0)
    assert training["max_rel_loss_diff"] <= RTOL


@pytest.mark.parametrize("network", ["sql", "gradient"])
def test_mlp_test_metrics_and_weights_equal_numpy(training: dict, network: str) -> None:
    assert training["evaluated_after"] == [0, training["steps"]]
    np.testing.assert_allclose(training[f"{network}_test_losses"], training["numpy_test_losses"], rtol=RTOL, atol=0)
    np.testing.assert_array_equal(training[f"{network}_test_accuracies"], training["numpy_test_accuracies"])
    assert training["max_rel_param_diff"] <= RTOL


def test_mlp_trained_by_grad_over_its_loss_writes_no_derivative() -> None:
    """That network's SQL is the forward pass as a CTE, one backward statement, and updates."""
    (backward,) = statements("mlp_gradient/backward")
    assert backward.count("grad((SELECT l FROM loss), ") == 4
    assert "WITH batch AS" in backward and "loss AS (" in backward
    update = "\n".join(statements("mlp_gradient/update"))
    for marker in ("grad(", "jvp(", "vjp("):
        assert marker not in backward.replace("grad((SELECT l FROM loss), ", "") + update
    assert mlp_digits.GRADIENT_STATEMENTS == 1 + 5


def test_mlp_training_reduces_the_loss(training: dict) -> None:
    assert training["sql_losses"][-1] < training["sql_losses"][0]
    assert training["sql_test_losses"][-1] < training["sql_test_losses"][0]
    assert training["sql_test_accuracies"][-1] > training["sql_test_accuracies"][0]


def test_mlp_reports_step_times(training: dict) -> None:
    assert training["sql_step_seconds"] > 0
    assert training["gradient_step_seconds"] > 0
    assert training["numpy_step_seconds"] > 0


def test_mlp_writes_the_curves_png(training: dict, curves_dir: Path) -> None:
    png = Path(training["png"])
    assert png.parent == curves_dir
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlp_reference_gradient_matches_finite_differences() -> None:
    """A unit learning rate makes the numpy step's weight change minus the gradient."""
    rng = np.random.default_rng(3)
    params = mlp_digits.init_params(rng)
    x = rng.uniform(0.0, 1.0, (5, mlp_digits.FEATURES))
    onehot = mlp_digits.one_hot(rng.integers(0, mlp_digits.CLASSES, 5))
    network = mlp_digits.NumpyMlp(params, lr=1.0)
    network.step(x, onehot)
    for name, value in params.items():

        def loss(changed: np.ndarray) -> float:
            _, logp = mlp_digits.NumpyMlp({**params, name: changed}, lr=1.0).forward(x)
            return float(-np.sum(onehot * logp) / len(x))

        gradient = value - network.params[name]
        for index in [tuple(rng.integers(0, size) for size in value.shape) for _ in range(3)]:
            np.testing.assert_allclose(gradient[index], central_difference(loss, value, index), rtol=1e-6, atol=1e-10)


# --- newton_cg.py -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def newton() -> dict:
    return newton_cg.main()


def test_newton_cg_in_sql_equals_scikit_learn(newton: dict) -> None:
    assert newton["outer_iterations"] <= newton_cg.MAX_OUTER
    assert newton["max_rel_coef_diff"] <= newton_cg.RTOL
    # scikit-learn's fit, redone here, is what the coefficients are measured against.
    np.testing.assert_allclose(newton["coefficients"], newton_cg.reference(newton_cg.load()), rtol=newton_cg.RTOL)
    losses = [it.loss for it in newton["history"]]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))


def test_newton_cg_never_forms_the_hessian(newton: dict) -> None:
    """Only products: fewer than one Hessian's worth of columns per outer iteration."""
    size = newton["coefficients"].size
    assert 0 < newton["hessian_vector_products"] < size * newton["outer_iterations"]


def test_gradient_descent_takes_far_more_iterations(newton: dict) -> None:
    assert newton["gradient_descent_iterations"] is not None
    assert newton["gradient_descent_iterations"] > 100 * newton["outer_iterations"]


def test_newton_cg_products_equal_the_closed_form_hessian() -> None:
    """ag.hvp of the SQL loss against Xᵀ diag(p(1 − p)) X + diag(penalty) · d, and the gradient."""
    problem = newton_cg.load()
    rng = np.random.default_rng(5)
    w, d = rng.normal(size=(2, problem.x.shape[1])) * 0.3
    sql = newton_cg.SqlProblem(problem)
    sql.set(w)
    p = 1.0 / (1.0 + np.exp(-(problem.x @ w)))
    gradient = problem.x.T @ (p - problem.y) + problem.penalised * w
    hessian = problem.x.T @ (problem.x * (p * (1 - p))[:, None]) + np.diag(problem.penalised)
    np.testing.assert_allclose(sql.gradient(), gradient, rtol=1e-10)
    np.testing.assert_allclose(sql.hvp(d), hessian @ d, rtol=1e-10)
    loss = np.sum(np.log1p(np.exp(problem.x @ w)) - problem.y * (problem.x @ w)) + 0.5 * np.sum(w[:-1] ** 2)
    np.testing.assert_allclose(sql.loss(), loss, rtol=1e-12)
