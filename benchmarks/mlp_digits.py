"""A neural network trained in SQL: 64 → 32 tanh → 10 softmax on handwritten digits.

The data are scikit-learn's bundled 8×8 digits (1 797 images; pixels scaled to
[0, 1]; a fixed, stratified 80/20 train/test split). Everything the network is
lives in relations of one DataFusion context:

* weights ``w1(i, j, w)``, ``b1(j, b)``, ``w2(j, k, w)``, ``b2(k, b)``;
* data ``train_pixels(s, i, v)``, ``train_labels(s, k, onehot)`` (and ``test_…``);
* the fixed, seeded mini-batch order ``schedule(step, s)``;
* the step being taken and the learning rate, one row ``hyper(step, lr)``.

One training step is twelve SQL statements in the files of ``sql/mlp_digits/``,
run in order by Python, which only sequences them:

1. forward — select the step's batch (``batch_pixels``, ``batch_labels``);
   ``hidden(s, j, xw, z, h)``: join the pixels with ``w1`` on ``i``, SUM by
   GROUP BY (s, j), add ``b1``, tanh; ``output(s, k, hw, z, m, total, p, logp,
   onehot)``: the logits likewise over ``w2`` and ``b2``, then the softmax —
   subtract the per-sample max m, exp, divide by the per-sample SUM total —
   and its logarithm ``logp = z − m − ln(total)``; the batch loss
   ``−Σ onehot·logp / n`` is read back;
2. backward — every local derivative is a ``vjp()`` of the expression the
   forward pass computed, and nothing is differentiated by hand: the cotangent
   of ``logp`` is ``vjp(−onehot·logp, logp, 1/n)``; it reaches the logits
   through ``vjp(z − m − ln(total), z, ·)`` and, summed per sample by GROUP BY,
   through ``vjp(z − m − ln(total), total, ·)`` and ``vjp(exp(z − m), z, ·)``;
   the hidden units' cotangent is ``SUM(vjp(h·w, h, δ))`` over a join with
   ``w2`` and ``vjp(tanh(z), z, ·)`` takes it through the activation. Joins carry
   cotangents from one relation to another, GROUP BY SUM adds them up;
3. update — each parameter table is replaced by ``w − lr·SUM(vjp(h·w, w, δ))``
   (``vjp(xw + b, b, δ)`` for biases), grouped by the parameter's keys, and
   ``hyper`` moves on to the next step.

The test-set loss and accuracy come from the same forward pass and metrics,
run with the whole test set as the batch.

The same network is also trained with its backward pass formed by the engine
(``sql/mlp_gradient/``), on the same tables ``w1``, ``b1``, ``w2``, ``b2``: one
statement, ``backward.sql``, holds the forward pass as its CTE ``loss`` and
selects every parameter beside ``grad((SELECT l FROM loss), w)`` — the four
tables' gradients from one reverse pass, the batch loss as one more row — and
``update.sql`` moves each table against its gradient. Nothing in it is a
derivative. Its test-set metrics come from the hand-wired forward pass, run on
its tables.

A numpy network with the same seeded initialisation (uniform ±1/√fan_in), the
same learning rate and the same mini-batches, whose gradients are the usual
hand-derived matrix formulas ((p − onehot)/n for the logits), is trained side
by side; both SQL networks must produce its loss at every step to a relative
1e-9 (``compare.RTOL``).

Run from the repository root::

    .venv/bin/python -m benchmarks.mlp_digits           # 30 epochs, 690 steps
    .venv/bin/python -m benchmarks.mlp_digits --quick   # 8 steps
    .venv/bin/python -m benchmarks.mlp_digits --out /tmp/plots
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from benchmarks.cli import RESULTS, arguments
from benchmarks.compare import check, max_difference_relative_to_largest, max_relative_difference
from benchmarks.sql import statement, statements
from benchmarks.timing import timed
from datafusion_autograd import AutogradContext, kept_statistics

FEATURES, HIDDEN, CLASSES = 64, 32, 10

Array = np.ndarray
Params = dict[str, Array]

BACKWARD_NOTE = (
    "Backward pass, hand-wired: every local derivative is a vjp() in SQL, the softmax–cross-entropy "
    "delta included (nothing is differentiated by hand); joins carry cotangents between "
    "relations and GROUP BY SUM accumulates them. Backward pass, grad over the loss: none written; "
    "one statement per step differentiates the forward pass, its CTE, by every parameter table."
)

# SQL statements one training step runs, besides reading its loss back.
HAND_WIRED_STATEMENTS = sum(
    len(statements(f"mlp_digits/{name}"))
    for name in ("select_batch", "hidden_layer", "output_layer", "output_grad", "hidden_grad", "updates", "next_step")
)
GRADIENT_STATEMENTS = len(statements("mlp_gradient/backward")) + len(statements("mlp_gradient/update"))


@dataclass(frozen=True)
class Config:
    lr: float = 0.5
    batch_size: int = 64
    epochs: int = 30
    # Stops training early (quick mode); None trains every epoch.
    max_steps: int | None = None
    seed: int = 0


FULL = Config()
QUICK = Config(epochs=1, max_steps=8)


@dataclass(frozen=True)
class Split:
    train_x: Array
    train_y: Array
    test_x: Array
    test_y: Array


def load_split() -> Split:
    digits = load_digits()
    x = digits.data / 16.0
    train_x, test_x, train_y, test_y = train_test_split(
        x, digits.target, test_size=0.2, random_state=0, stratify=digits.target
    )
    return Split(train_x, train_y, test_x, test_y)


def init_params(rng: np.random.Generator) -> Params:
    """Uniform in ±1/√fan_in, weights and biases alike."""

    def uniform(shape: tuple[int, ...], fan_in: int) -> Array:
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape)

    return {
        "w1": uniform((FEATURES, HIDDEN), FEATURES),
        "b1": uniform((HIDDEN,), FEATURES),
        "w2": uniform((HIDDEN, CLASSES), HIDDEN),
        "b2": uniform((CLASSES,), HIDDEN),
    }


def batch_schedule(rng: np.random.Generator, samples: int, config: Config) -> list[Array]:
    """Sample ids of every step: a fresh permutation per epoch, cut into batches."""
    batches = []
    for _ in range(config.epochs):
        order = rng.permutation(samples)
        batches += [order[start : start + config.batch_size] for start in range(0, samples, config.batch_size)]
    return batches[: config.max_steps]


def one_hot(labels: Array) -> Array:
    return np.eye(CLASSES)[labels]


def matrix_relation(matrix: Array, row: str, column: str, value: str) -> dict[str, Array]:
    """A matrix in long form: one row per entry, keyed by its indices."""
    rows, columns = np.indices(matrix.shape)
    return {row: rows.ravel(), column: columns.ravel(), value: matrix.ravel()}


def param_relations(params: Params) -> dict[str, dict[str, Array]]:
    return {
        "w1": matrix_relation(params["w1"], "i", "j", "w"),
        "b1": {"j": np.arange(HIDDEN), "b": params["b1"]},
        "w2": matrix_relation(params["w2"], "j", "k", "w"),
        "b2": {"k": np.arange(CLASSES), "b": params["b2"]},
    }


def parameter_table(params: Params) -> dict[str, Array]:
    """The parameters as one table ``params(tensor, i, j, w)``, with the step counter as a row."""
    parts = [
        ("w1", matrix_relation(params["w1"], "i", "j", "w")),
        ("b1", {"i": np.zeros(HIDDEN, dtype=int), "j": np.arange(HIDDEN), "w": params["b1"]}),
        ("w2", matrix_relation(params["w2"], "i", "j", "w")),
        ("b2", {"i": np.zeros(CLASSES, dtype=int), "j": np.arange(CLASSES), "w": params["b2"]}),
        ("step", {"i": np.zeros(1, dtype=int), "j": np.zeros(1, dtype=int), "w": np.zeros(1)}),
    ]
    return {
        "tensor": np.concatenate([np.full(len(part["w"]), name) for name, part in parts]),
        **{column: np.concatenate([part[column] for _, part in parts]) for column in ("i", "j", "w")},
    }


def data_relations(split: Split, schedule: list[Array]) -> dict[str, dict[str, Array]]:
    return {
        "train_pixels": matrix_relation(split.train_x, "s", "i", "v"),
        "train_labels": matrix_relation(one_hot(split.train_y), "s", "k", "onehot"),
        "test_pixels": matrix_relation(split.test_x, "s", "i", "v"),
        "test_labels": matrix_relation(one_hot(split.test_y), "s", "k", "onehot"),
        "schedule": {
            "step": np.concatenate([np.full(len(batch), step) for step, batch in enumerate(schedule)]),
            "s": np.concatenate(schedule),
        },
    }


class SqlMlp:
    """The network as relations in one ``AutogradContext``; each step is SQL only, its backward pass wired by hand."""

    def __init__(self, params: Params, split: Split, schedule: list[Array], lr: float) -> None:
        self.ctx = AutogradContext()
        relations = {**param_relations(params), **data_relations(split, schedule), "hyper": {"step": [0], "lr": [lr]}}
        for name, columns in relations.items():
            self.ctx.register_record_batches(name, [[pa.RecordBatch.from_pydict(columns)]])

    def step(self) -> float:
        """One gradient step on the batch of ``hyper.step``; returns the loss before it."""
        self._execute("mlp_digits/select_batch")
        loss = self._forward()["loss"]
        self._execute("mlp_digits/output_grad")
        self._execute("mlp_digits/hidden_grad")
        self._execute("mlp_digits/updates")
        self._execute("mlp_digits/next_step")
        return loss

    def evaluate(self) -> tuple[float, float]:
        """(loss, accuracy) on the test set."""
        self._execute("mlp_digits/select_test_set")
        metrics = self._forward()
        return metrics["loss"], metrics["accuracy"]

    def _forward(self) -> dict[str, float]:
        """Fills ``hidden`` and ``output`` from the batch; returns its loss and accuracy."""
        self._execute("mlp_digits/hidden_layer")
        self._execute("mlp_digits/output_layer")
        return self._row(statement("mlp_digits/metrics"))

    def params(self) -> Params:
        """The current weights, read back into arrays shaped like ``init_params``'."""
        w1 = self._column("SELECT w FROM w1 ORDER BY i, j", "w").reshape(FEATURES, HIDDEN)
        w2 = self._column("SELECT w FROM w2 ORDER BY j, k", "w").reshape(HIDDEN, CLASSES)
        b1 = self._column("SELECT b FROM b1 ORDER BY j", "b")
        b2 = self._column("SELECT b FROM b2 ORDER BY k", "b")
        return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}

    def _execute(self, name: str) -> None:
        """Every statement of ``sql/<name>.sql``, in order."""
        for sql in statements(name):
            # CREATE statements take effect when planned; collect() returns nothing for them.
            self.ctx.sql(sql).collect()

    def _row(self, query: str) -> dict[str, float]:
        return {name: values[0] for name, values in self.ctx.sql(query).to_pydict().items()}

    def _column(self, query: str, name: str) -> Array:
        return np.array(self.ctx.sql(query).to_pydict()[name])


class GradientMlp(SqlMlp):
    """The same tables; each step is one backward statement whose loss is a CTE, and the updates."""

    def step(self) -> float:
        """One gradient step on the batch of ``hyper.step``; returns the loss before it."""
        self._execute("mlp_gradient/backward")
        loss = self._row("SELECT value AS loss FROM gradients WHERE tensor = 'loss'")["loss"]
        self._execute("mlp_gradient/update")
        return loss

    def gradients(self) -> Params:
        """The gradients of the last backward pass, shaped like ``init_params``'."""
        found = self.ctx.sql("SELECT tensor, i, j, grad FROM gradients WHERE tensor <> 'loss'").to_pydict()
        shapes = {"w1": (FEATURES, HIDDEN), "b1": (HIDDEN,), "w2": (HIDDEN, CLASSES), "b2": (CLASSES,)}
        out = {name: np.full(shape, np.nan) for name, shape in shapes.items()}
        for tensor, i, j, grad in zip(found["tensor"], found["i"], found["j"], found["grad"]):
            out[tensor][(i, j) if tensor.startswith("w") else (j,)] = grad
        return out


class NumpyMlp:
    """The same network in numpy, with gradients derived by hand."""

    def __init__(self, params: Params, lr: float) -> None:
        self.params = {name: value.copy() for name, value in params.items()}
        self.lr = lr

    def forward(self, x: Array) -> tuple[Array, Array]:
        """(hidden activations, log-softmax of the logits)."""
        hidden = np.tanh(x @ self.params["w1"] + self.params["b1"])
        logits = hidden @ self.params["w2"] + self.params["b2"]
        shifted = logits - logits.max(axis=1, keepdims=True)
        return hidden, shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def gradients(self, x: Array, onehot: Array) -> Params:
        """The mean cross-entropy's gradient on (x, onehot), by backpropagation."""
        return self._backward(x, onehot, *self.forward(x))

    def _backward(self, x: Array, onehot: Array, hidden: Array, logp: Array) -> Params:
        delta_out = (np.exp(logp) - onehot) / len(x)
        delta_hidden = (delta_out @ self.params["w2"].T) * (1.0 - hidden**2)
        return {
            "w1": x.T @ delta_hidden,
            "b1": delta_hidden.sum(axis=0),
            "w2": hidden.T @ delta_out,
            "b2": delta_out.sum(axis=0),
        }

    def step(self, x: Array, onehot: Array) -> float:
        """One gradient step on (x, onehot); returns the loss before it."""
        hidden, logp = self.forward(x)
        for name, grad in self._backward(x, onehot, hidden, logp).items():
            self.params[name] -= self.lr * grad
        return float(-np.sum(onehot * logp) / len(x))

    def evaluate(self, x: Array, labels: Array) -> tuple[float, float]:
        """(loss, accuracy) on (x, labels)."""
        _, logp = self.forward(x)
        loss = -np.mean(logp[np.arange(len(x)), labels])
        return float(loss), float(np.mean(logp.argmax(axis=1) == labels))


@dataclass
class History:
    """What one implementation did: loss and time per step, test metrics at checkpoints."""

    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    test_losses: list[float] = field(default_factory=list)
    test_accuracies: list[float] = field(default_factory=list)

    def record_step(self, loss: float, seconds: float) -> None:
        self.losses.append(loss)
        self.step_seconds.append(seconds)

    def record_evaluation(self, metrics: tuple[float, float]) -> None:
        self.test_losses.append(metrics[0])
        self.test_accuracies.append(metrics[1])


@dataclass
class Run:
    """Every training: histories, the step counts after which all were evaluated, final weights."""

    sql: History = field(default_factory=History)
    gradient: History = field(default_factory=History)
    numpy: History = field(default_factory=History)
    evaluated_after: list[int] = field(default_factory=list)
    sql_params: Params = field(default_factory=dict)
    gradient_params: Params = field(default_factory=dict)
    numpy_params: Params = field(default_factory=dict)
    # What the gradient network's context reused of its statements (ag.kept_statistics).
    gradient_kept: dict[str, int] = field(default_factory=dict)


def train(config: Config, split: Split) -> Run:
    """Trains the two SQL networks and the numpy network side by side on the same batches.

    All are evaluated on the test set before the first step, after every epoch
    and after the last step. Each step runs the three in turn, so that their
    timings see the same machine.
    """
    rng = np.random.default_rng(config.seed)
    params = init_params(rng)
    schedule = batch_schedule(rng, len(split.train_x), config)
    steps_per_epoch = -(-len(split.train_x) // config.batch_size)
    train_onehot = one_hot(split.train_y)
    sql = SqlMlp(params, split, schedule, config.lr)
    gradient = GradientMlp(params, split, schedule, config.lr)
    reference = NumpyMlp(params, config.lr)
    run = Run()

    def evaluate(done: int) -> None:
        run.sql.record_evaluation(sql.evaluate())
        run.gradient.record_evaluation(gradient.evaluate())
        run.numpy.record_evaluation(reference.evaluate(split.test_x, split.test_y))
        run.evaluated_after.append(done)

    evaluate(0)
    progress = tqdm(enumerate(schedule), total=len(schedule), desc="training in SQL", unit="step")
    for step, batch in progress:
        run.sql.record_step(*timed(sql.step))
        run.gradient.record_step(*timed(gradient.step))
        run.numpy.record_step(*timed(reference.step, split.train_x[batch], train_onehot[batch]))
        done = step + 1
        if done % steps_per_epoch == 0 or done == len(schedule):
            evaluate(done)
            progress.set_postfix(loss=f"{run.sql.losses[-1]:.4f}", test_acc=f"{run.sql.test_accuracies[-1]:.3f}")
    run.sql_params, run.gradient_params, run.numpy_params = sql.params(), gradient.params(), reference.params
    run.gradient_kept = kept_statistics(gradient.ctx)
    return run


def plot(run: Run, path: Path) -> None:
    sql, reference, evaluated = run.sql, run.numpy, run.evaluated_after
    # A bare Figure renders with Agg and leaves pyplot's global state alone.
    figure = Figure(figsize=(11, 4), layout="tight")
    losses, accuracy = figure.subplots(1, 2)
    # Step t's batch loss is measured at the weights after t updates, like an evaluation after t.
    steps = np.arange(len(sql.losses))
    losses.plot(steps, sql.losses, label="SQL, hand-wired: batch loss", linewidth=1.5)
    losses.plot(steps, run.gradient.losses, ":", label="SQL, grad over the loss: batch loss", linewidth=1.5)
    losses.plot(steps, reference.losses, "--", label="numpy: batch loss", linewidth=1)
    losses.plot(evaluated, sql.test_losses, "o-", label="SQL: test loss", markersize=3)
    losses.set(xlabel="updates done", ylabel="cross-entropy", yscale="log", title="Loss")
    losses.legend()
    accuracy.plot(evaluated, sql.test_accuracies, "o-", label="SQL, hand-wired", markersize=3)
    accuracy.plot(evaluated, run.gradient.test_accuracies, "s:", label="SQL, grad over the loss", markersize=3)
    accuracy.plot(evaluated, reference.test_accuracies, "x--", label="numpy", markersize=5)
    accuracy.set(xlabel="updates done", ylabel="test accuracy", ylim=(0, 1), title="Test accuracy")
    accuracy.legend(loc="lower right")
    figure.suptitle("MLP 64 → 32 tanh → 10 softmax on sklearn digits, trained in SQL")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def check_agreement(run: Run) -> dict[str, float]:
    """Both SQL runs are the numpy run: losses at every step and evaluation, and final weights.

    Returns the largest relative differences over both, each checked against
    ``compare.RTOL``, and each network's own batch-loss difference
    (``sql_max_rel_loss_diff``, ``gradient_max_rel_loss_diff``); the test
    accuracies must be equal.
    """
    differences = {"max_rel_loss_diff": 0.0, "max_rel_test_loss_diff": 0.0, "max_rel_param_diff": 0.0}
    reference = run.numpy
    own = {}
    for prefix, name, history, params in (("sql", "hand-wired", run.sql, run.sql_params),
                                          ("gradient", "grad over the loss", run.gradient, run.gradient_params)):
        np.testing.assert_array_equal(history.test_accuracies, reference.test_accuracies)
        weights = max(max_difference_relative_to_largest(params[key], want) for key, want in run.numpy_params.items())
        found = {
            "max_rel_loss_diff": check(f"{name} batch loss", max_relative_difference(history.losses, reference.losses)),
            "max_rel_test_loss_diff": check(
                f"{name} test loss", max_relative_difference(history.test_losses, reference.test_losses)
            ),
            "max_rel_param_diff": check(f"{name} final weights", weights),
        }
        differences = {key: max(value, found[key]) for key, value in differences.items()}
        own[f"{prefix}_max_rel_loss_diff"] = found["max_rel_loss_diff"]
    return {**differences, **own}


def report(config: Config, result: dict) -> None:
    print(
        f"{result['steps']} steps (batch {config.batch_size}, lr {config.lr}), "
        f"wall time {result['wall_seconds']:.1f} s"
    )
    print(BACKWARD_NOTE)
    print(f"batch loss: first {result['sql_losses'][0]:.4f}, last {result['sql_losses'][-1]:.4f}")
    print(
        f"SQL vs numpy: max relative difference {result['max_rel_loss_diff']:.1e} in the loss over every step, "
        f"{result['max_rel_test_loss_diff']:.1e} in the test loss, {result['max_rel_param_diff']:.1e} in the "
        "final weights"
    )
    print(
        f"test accuracy: SQL {result['test_accuracy']:.4f}, numpy {result['numpy_test_accuracy']:.4f} "
        f"({result['test_samples']} held-out images)"
    )
    print(
        f"time per step: SQL hand-wired {1e3 * result['sql_step_seconds']:.1f} ms "
        f"({result['hand_wired_statements']} statements), "
        f"SQL grad over the loss {1e3 * result['gradient_step_seconds']:.1f} ms "
        f"({result['gradient_statements']} statements), numpy {1e3 * result['numpy_step_seconds']:.3f} ms"
    )
    print(f"curves: {result['png']}")


def main(quick: bool = False, out: Path | None = None) -> dict:
    """Trains in SQL and numpy, checks they agree step by step, plots and reports."""
    config = QUICK if quick else FULL
    split = load_split()
    run, wall_seconds = timed(train, config, split)
    differences = check_agreement(run)
    png = Path(out if out is not None else RESULTS) / ("mlp_digits_quick.png" if quick else "mlp_digits.png")
    plot(run, png)
    sql, reference = run.sql, run.numpy
    result = {
        "steps": len(sql.losses),
        "sql_losses": np.array(sql.losses),
        "numpy_losses": np.array(reference.losses),
        "evaluated_after": run.evaluated_after,
        "sql_test_losses": np.array(sql.test_losses),
        "numpy_test_losses": np.array(reference.test_losses),
        "sql_test_accuracies": np.array(sql.test_accuracies),
        "numpy_test_accuracies": np.array(reference.test_accuracies),
        "test_accuracy": sql.test_accuracies[-1],
        "numpy_test_accuracy": reference.test_accuracies[-1],
        "test_samples": len(split.test_y),
        **differences,
        "sql_step_seconds": float(np.mean(sql.step_seconds)),
        "gradient_losses": np.array(run.gradient.losses),
        "gradient_test_losses": np.array(run.gradient.test_losses),
        "gradient_test_accuracies": np.array(run.gradient.test_accuracies),
        "gradient_step_seconds": float(np.mean(run.gradient.step_seconds)),
        "gradient_test_accuracy": run.gradient.test_accuracies[-1],
        "hand_wired_statements": HAND_WIRED_STATEMENTS,
        "gradient_statements": GRADIENT_STATEMENTS,
        "gradient_kept": run.gradient_kept,
        "numpy_step_seconds": float(np.mean(reference.step_seconds)),
        "wall_seconds": wall_seconds,
        "png": png,
    }
    report(config, result)
    return result


if __name__ == "__main__":
    main(**arguments(__doc__, quick=f"train {QUICK.max_steps} steps only", draws=True))
