"""P7: what a whole-query gradient costs, against its own loss, the peer ddx and numpy.

Three losses over samples stored in long form, each a file of ``sql/gradient_cost/``:
least squares and the logistic loss of a linear model (16 features per sample,
``x(s, i, v)``, ``w(i, w)``, ``y(s, t, l)``) at 10³ … 10⁶ samples, and the mean
cross-entropy of the digits MLP (64 → 32 tanh → 10 softmax) at 10³ and 10⁴ samples.
The MLP stops there because its forward pass alone joins every pixel with every hidden
unit — 2,048 rows per sample, 2·10⁷ at 10⁴ samples and 2·10⁸ at 10⁵, more than this
2-core machine computes in a benchmark's time.

Each size is timed in interleaved rounds (``benchmarks.timing``), in one process:

- ``loss``: the loss query alone, ``ctx.sql(loss)``, on the same context and data;
- ``gradient``: ``ag.gradient(ctx, loss, "w.w")`` read back in full — for the MLP
  ``ag.gradients`` of all four parameter tables from its one backward pass;
- ``one table`` (MLP): ``ag.gradient`` of ``w1`` alone, so that the four tables' pass
  can be set against one table's (the target is ≤ 1.3×), and ``four passes``: four
  ``ag.gradient`` calls, one per table;
- ``numpy``: the gradient's closed form (for the MLP, backpropagation written by hand);
- ``ddx``: the peer (PyPI ``ddxdb`` 0.4.3, on ``datafusion`` 55), in a venv of its own that
  the full run creates under ``~/.cache/datafusion-autograd/``, driven over a pipe
  (``benchmarks.peer``); the CTE form ``WITH loss AS (…) SELECT i, grad(loss, w) …``, for
  the MLP with respect to ``w1`` (the peer takes one table per statement). When it cannot
  be installed or refuses a loss, the report says so and why.

Every gradient is checked against numpy's (``compare.RTOL``), the peer's included (its
difference is reported, not enforced). The peak memory of the gradient and of the loss —
the resident high-water mark above the starting point (``benchmarks.memory``) — is measured
once each, after the timings, each in a fresh process that has read the case's tables.

    .venv/bin/python -m benchmarks.gradient_cost            # full run (release build), P7 alone
    .venv/bin/python -m benchmarks.gradient_cost --quick    # small sizes, no peer
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.ipc
from datafusion import SessionContext

import datafusion_autograd as ag
from benchmarks import mlp_digits
from benchmarks.cli import RESULTS, arguments, require_release_build
from benchmarks.compare import check, max_relative_difference
from benchmarks.memory import peak_bytes
from benchmarks.sql import statement
from benchmarks.timing import Timing, interleaved

Array = np.ndarray
ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = Path.home() / ".cache" / "datafusion-autograd" / "ddx-venv"
PEER_REQUIREMENT = "ddxdb[datafusion]==0.4.3"
FEATURES = 16
PARTITIONS = 2
SIZES = (10**3, 10**4, 10**5, 10**6)
MLP_SIZES = (10**3, 10**4)


@dataclass
class Case:
    """One loss at one size: its tables, and numpy's gradient of it for every parameter."""

    name: str
    samples: int
    tables: dict[str, dict[str, Array]]
    loss: str
    # The parameters differentiated by, "<table>.<column>"; the first is the peer's.
    parameters: tuple[str, ...]
    # parameter → ∂loss/∂ that column, in the order of the table's rows
    numpy: Callable[[], dict[str, Array]]
    timings: dict[str, Timing] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    difference: float = float("nan")
    peer_difference: float = float("nan")
    peer: str = ""  # why the peer was not measured, when it was not

    def keys(self, parameter: str) -> list[str]:
        """The columns of the parameter's table other than the parameter."""
        table, column = parameter.split(".")
        return [name for name in self.tables[table] if name != column]


def linear(name: str, samples: int, rng: np.random.Generator) -> Case:
    """Least squares or logistic regression over ``samples`` samples of 16 features."""
    x = rng.normal(size=(samples, FEATURES))
    truth = rng.normal(scale=0.3, size=FEATURES)
    t = x @ truth + rng.normal(size=samples)
    labels = (rng.uniform(size=samples) < 1 / (1 + np.exp(-(x @ truth)))).astype(np.float64)
    w = rng.normal(scale=0.1, size=FEATURES)

    def numpy() -> dict[str, Array]:
        z = x @ w
        if name == "least squares":
            return {"w.w": 2.0 / samples * x.T @ (z - t)}
        return {"w.w": x.T @ (1 / (1 + np.exp(-z)) - labels) / samples}

    tables = {
        "x": mlp_digits.matrix_relation(x, "s", "i", "v"),
        "w": {"i": np.arange(FEATURES), "w": w},
        "y": {"s": np.arange(samples), "t": t, "l": labels},
    }
    return Case(name, samples, tables, statement("gradient_cost/" + name.replace(" ", "_")), ("w.w",), numpy)


def mlp(samples: int, rng: np.random.Generator) -> Case:
    """The digits network's loss over ``samples`` random images and labels."""
    params = mlp_digits.init_params(rng)
    x = rng.uniform(size=(samples, mlp_digits.FEATURES))
    onehot = mlp_digits.one_hot(rng.integers(0, mlp_digits.CLASSES, samples))
    network = mlp_digits.NumpyMlp(params, lr=0.0)

    def numpy() -> dict[str, Array]:
        grads = network.gradients(x, onehot)
        return {"w1.w": grads["w1"].ravel(), "b1.b": grads["b1"], "w2.w": grads["w2"].ravel(), "b2.b": grads["b2"]}

    tables = {
        "x": mlp_digits.matrix_relation(x, "s", "i", "v"),
        "y": mlp_digits.matrix_relation(onehot, "s", "k", "onehot"),
        **mlp_digits.param_relations(params),
    }
    return Case("MLP", samples, tables, statement("gradient_cost/mlp"), ("w1.w", "b1.b", "w2.w", "b2.b"), numpy)


def batches(columns: dict[str, Array]) -> list[pa.RecordBatch]:
    """The table cut into a few batches, so that it spreads over the partitions."""
    table = pa.table(columns)
    size = max(1, -(-table.num_rows // (4 * PARTITIONS)))
    return table.to_batches(max_chunksize=size)


def context(case: Case) -> SessionContext:
    ctx = SessionContext()
    for name, columns in case.tables.items():
        parts = batches(columns)
        ctx.register_record_batches(name, [parts[k::PARTITIONS] for k in range(PARTITIONS)])
    return ctx


def write_tables(case: Case, directory: Path) -> None:
    """Every table as ``<name>.arrow`` (Arrow IPC), in the batches our context has."""
    for name, columns in case.tables.items():
        parts = batches(columns)
        with pa.OSFile(str(directory / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(sink, parts[0].schema) as writer:
            for part in parts:
                writer.write_batch(part)


def in_row_order(case: Case, parameter: str, columns: dict[str, list], values: str) -> Array:
    """A gradient's column ``values`` in the order of the parameter table's rows (sorted keys)."""
    keys = case.keys(parameter)
    order = np.lexsort([np.asarray(columns[k]) for k in reversed(keys)])
    return np.asarray(columns[values], dtype=np.float64)[order]


class Peer:
    """The peer, ddx, in a process of its own (``benchmarks.peer``)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    @staticmethod
    def start() -> "tuple[Peer | None, str]":
        """The running peer, or None and why it cannot run."""
        python = PEER_VENV / "bin" / "python"
        try:
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True, capture_output=True, text=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", PEER_REQUIREMENT, "pyarrow"],
                           check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as error:
            return None, f"`{PEER_REQUIREMENT}` could not be installed ({(error.stderr or '').strip().splitlines()[-1:]})"
        process = subprocess.Popen([str(python), "-m", "benchmarks.peer"], cwd=ROOT, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        greeting = json.loads(process.stdout.readline() or '{"error": "the peer did not start"}')
        if "error" in greeting:
            process.kill()
            return None, greeting["error"]
        return Peer(process), ""

    def ask(self, **request: object) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the peer stopped (exit code {self.process.wait()})")
        return json.loads(answer)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)

    def query(self, case: Case) -> tuple[str, str]:
        """The peer's statement for the case — the loss as a CTE — and the parameter it differentiates
        (the first: the peer takes one table per statement)."""
        parameter = case.parameters[0]
        table, column = parameter.split(".")
        keys = ", ".join(case.keys(parameter))
        return f"WITH loss AS ({case.loss}) SELECT {keys}, grad(loss, {column}) AS g FROM {table}", parameter


def measure(case: Case, repeats: int, peer: "Peer | None", directory: Path) -> None:
    """Fills the case's timings, memory and differences."""
    ctx = context(case)
    reference = case.numpy()
    parameters = list(case.parameters)

    def gradient() -> dict[str, dict[str, list]]:
        frames = ag.gradients(ctx, case.loss, parameters)
        return {parameter: frame.to_pydict() for parameter, frame in frames.items()}

    got = gradient()
    case.difference = max(
        check(f"P7 {case.name}, {case.samples:,} samples: {parameter} against numpy",
              max_relative_difference(in_row_order(case, parameter, got[parameter], "grad"), reference[parameter]))
        for parameter in parameters
    )
    variants: dict[str, Callable[[], object]] = {
        "loss": lambda: ctx.sql(case.loss).to_pydict(),
        "gradient": gradient,
        "numpy": case.numpy,
    }
    if len(parameters) > 1:
        variants["one table"] = lambda: ag.gradient(ctx, case.loss, parameters[0]).to_pydict()
        variants["one pass per table"] = lambda: [ag.gradient(ctx, case.loss, p).to_pydict() for p in parameters]
    # Read by the peer and by the processes that measure peak memory.
    write_tables(case, directory)
    if peer is not None:
        query, parameter = peer.query(case)
        peer.ask(load=str(directory), tables=list(case.tables), partitions=PARTITIONS)
        answer = peer.ask(rows=query)
        if "error" in answer:
            case.peer = answer["error"].splitlines()[0][:200]
        else:
            case.peer_difference = max_relative_difference(
                in_row_order(case, parameter, answer["columns"], "g"), reference[parameter])
            variants["ddx"] = lambda: peer.ask(time=query)
    case.timings = interleaved(variants, repeats)
    case.memory = {what: peak_in_a_process_of_its_own(case, directory, what) for what in ("loss", "gradient")}
    if "ddx" in variants:
        fresh, _ = Peer.start()
        if fresh is not None:
            try:
                fresh.ask(load=str(directory), tables=list(case.tables), partitions=PARTITIONS)
                case.memory["ddx"] = int(fresh.ask(peak=query).get("bytes", 0))
            finally:
                fresh.stop()


def peak_in_a_process_of_its_own(case: Case, directory: Path, what: str) -> int:
    """The memory the loss query or the gradient (``what``) needs, measured in a fresh process
    that has read the case's tables from ``directory``: here, memory the timings freed stays
    resident in the allocators, and a later call reuses it without raising the high-water mark."""
    request = {"directory": str(directory), "tables": list(case.tables), "loss": case.loss,
               "parameters": list(case.parameters), "what": what}
    child = ("import json, sys\n"
             "from benchmarks.gradient_cost import peak_of\n"
             "print(peak_of(json.loads(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", child, json.dumps(request)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def peak_of(request: dict) -> int:
    """In the fresh process: reads the tables, then measures one call (see above)."""
    ctx = SessionContext()
    for name in request["tables"]:
        with pa.OSFile(str(Path(request["directory"]) / f"{name}.arrow"), "rb") as source:
            parts = pa.ipc.open_file(source).read_all().to_batches()
        ctx.register_record_batches(name, [parts[k::PARTITIONS] for k in range(PARTITIONS)])
    if request["what"] == "loss":
        return peak_bytes(lambda: ctx.sql(request["loss"]).to_pydict())
    return peak_bytes(lambda: [frame.to_pydict() for frame in ag.gradients(ctx, request["loss"], request["parameters"]).values()])


def cases(quick: bool) -> list[Case]:
    rng = np.random.default_rng(7)
    sizes, mlp_sizes = ((10**3, 10**4), (10**2,)) if quick else (SIZES, MLP_SIZES)
    return ([linear(name, n, rng) for name in ("least squares", "logistic") for n in sizes]
            + [mlp(n, rng) for n in mlp_sizes])


def run(quick: bool) -> list[Case]:
    """Measures every case; the full run drives the peer too."""
    peer, why = (None, "not measured in quick runs") if quick else Peer.start()
    every = cases(quick)
    try:
        with tempfile.TemporaryDirectory() as directory:
            for case in every:
                print(f"P7: {case.name}, {case.samples:,} samples", flush=True)
                case.peer = why
                measure(case, 2 if quick else (5 if case.samples < 10**6 else 3), peer, Path(directory))
    finally:
        if peer is not None:
            peer.stop()
    return every


def megabytes(count: int) -> str:
    return f"{count / 2**20:,.0f} MiB"


def section(every: list[Case]) -> list[str]:
    """P7's lines of the report."""
    lines = ["", "### P7: a whole query's gradient against its loss, the peer ddx and numpy", "",
             "Medians of interleaved rounds (min–max); *gradient / loss* is the target ≤ 2.0 and "
             "*gradient / ddx* ≤ 0.6. Peak memory is the resident high-water mark above the start "
             "of the call, each measured once in a fresh process that has read the data into memory.", "",
             "| loss | samples | loss | gradient | gradient / loss | ddx | gradient / ddx | numpy "
             "| peak memory: loss | gradient | ddx |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes = []
    for case in every:
        t = case.timings
        ratio = t["gradient"].median / t["loss"].median
        if "ddx" in t:
            peer, versus = t["ddx"].span(), f"{t['gradient'].median / t['ddx'].median:.2f}"
            peer_memory = megabytes(case.memory["ddx"])
        else:
            peer, versus, peer_memory = "—", "—", "—"
            notes.append(f"{case.name}, {case.samples:,} samples: ddx {case.peer}.")
        lines.append(f"| {case.name} | {case.samples:,} | {t['loss'].span()} | {t['gradient'].span()} | {ratio:.2f} "
                     f"| {peer} | {versus} | {t['numpy'].span()} | {megabytes(case.memory['loss'])} "
                     f"| {megabytes(case.memory['gradient'])} | {peer_memory} |")
    lines += ["", f"Every gradient equals numpy's to a relative {max(c.difference for c in every):.1e} at most "
              "(enforced: 1e-9)."]
    ran = [c for c in every if "ddx" in c.timings]
    if ran:
        lines[-1] += " The peer's gradients differ from numpy's by " + ", ".join(
            f"{c.peer_difference:.1e}" for c in ran) + " (in the order of the table's rows where it ran)."
    lines += ["", *notes] if notes else []
    tables = [c for c in every if "one table" in c.timings]
    if tables:
        lines += ["", "The MLP's four parameter tables from one backward pass (`ag.gradients`) against one "
                  "table's gradient (`ag.gradient` of `w1`) and one pass per table:", "",
                  "| samples | four tables, one pass | one table | ratio | one pass per table | ratio |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for case in tables:
            t = case.timings
            lines.append(f"| {case.samples:,} | {t['gradient'].span()} | {t['one table'].span()} "
                         f"| {t['gradient'].median / t['one table'].median:.2f} | {t['one pass per table'].span()} "
                         f"| {t['one pass per table'].median / t['one table'].median:.2f} |")
    return lines


def plot(every: list[Case], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, marker in (("least squares", "o-"), ("logistic", "s-"), ("MLP", "^-")):
        chosen = [c for c in every if c.name == name]
        sizes = [c.samples for c in chosen]
        left.semilogx(sizes, [c.timings["gradient"].median / c.timings["loss"].median for c in chosen], marker, label=name)
        peer = [c for c in chosen if "ddx" in c.timings]
        if peer:
            right.semilogx([c.samples for c in peer],
                           [c.timings["gradient"].median / c.timings["ddx"].median for c in peer], marker, label=name)
    left.axhline(2.0, color="k", linestyle=":", label="target")
    left.set(xlabel="samples", ylabel="gradient time / loss time", title="against the loss", ylim=(0, None))
    right.axhline(0.6, color="k", linestyle=":", label="target")
    right.set(xlabel="samples", ylabel="gradient time / ddx's", title="against ddx 0.4.3", ylim=(0, None))
    for axis in (left, right):
        axis.legend()
    fig.suptitle("P7: the gradient of a whole query")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(quick: bool = False) -> list[Case]:
    """Runs P7 alone: prints its section and draws ``gradient_cost.png`` where ``benchmarks.run`` does."""
    if not quick:
        require_release_build()
    every = run(quick)
    out = RESULTS / ("quick" if quick else "")
    out.mkdir(parents=True, exist_ok=True)
    plot(every, out / "gradient_cost.png")
    print("\n".join(section(every)))
    return every


if __name__ == "__main__":
    main(**arguments(__doc__, quick="small sizes, without the peer: a smoke run"))
