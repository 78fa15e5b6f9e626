"""The benchmark suite: every ratio measured side by side in one run.

    .venv/bin/python -m benchmarks.run            # full run, by hand (release build, ~30 min)
    .venv/bin/python -m benchmarks.run --quick    # smoke run, part of the test command
    .venv/bin/python -m benchmarks.run --keep-p6  # full run, P6's numbers kept from the last one

- P1  ``SELECT SUM(grad(f(x), x))`` against the same derivative written by hand in SQL,
      on the same engine (PyPI ``datafusion`` through the SQL bridge), for several f;
- P2  the same against numpy's vectorised closed form;
- P3  the same against JAX ``jit(vmap(grad(f)))`` on CPU, when JAX is installed;
- P4  nesting depth: derivative size, planning and execution time (Rust, criterion);
- P5  planning overhead per marker: native in-planner, in-planner across FFI (Rust,
      criterion, the cdylib loaded with dlopen), and the Python SQL bridge;
- P6  one training step of the digits MLP, SQL against numpy;
- P7  a whole query's gradient against its loss, the peer ddx and numpy
      (``benchmarks.gradient_cost``).

Timings in Python are interleaved (every variant once per round, the order rotating),
reported as median and min–max; the Rust benches (P4, P5) are criterion groups, run one
after another. A full run refuses a debug build of the extension. The full run writes ``benchmarks/results/`` and the
results section of ``benchmarks/README.md``; ``--quick`` writes ``benchmarks/results/quick/``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyarrow as pa
from datafusion import SessionContext

from benchmarks import gradient_cost, mlp_digits
from benchmarks.cli import RESULTS, arguments, require_release_build
from benchmarks.compare import check, max_relative_difference
from benchmarks.timing import Timing, format_seconds, interleaved
from datafusion_autograd import AutogradContext, rewrite_sql
from datafusion_autograd.tables import catalog

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
README = HERE / "README.md"
RESULTS_BEGIN = "<!-- results:begin -->"
RESULTS_END = "<!-- results:end -->"

try:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
except ImportError:
    jax = None


@dataclass(frozen=True)
class Elementwise:
    """A function of x (and of the data columns y and l) with its derivative in x written
    by hand, in SQL and numpy; ``f_jax`` takes ``(x, y, l)``."""

    name: str
    f: str
    derivative_sql: str
    derivative_numpy: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    f_jax: Callable


ELEMENTWISE = [
    Elementwise(
        "polynomial",
        "3 * x * x * x - 2 * x * x + x - 5",
        "9 * x * x - 4 * x + 1",
        lambda x, y, l: 9 * x * x - 4 * x + 1,
        lambda x, y, l: 3 * x**3 - 2 * x**2 + x - 5,
    ),
    Elementwise(
        "transcendental",
        "sin(x) * exp(-x * x) + ln(1 + x * x)",
        "cos(x) * exp(-x * x) - 2 * x * sin(x) * exp(-x * x) + 2 * x / (1 + x * x)",
        lambda x, y, l: np.cos(x) * np.exp(-x * x) - 2 * x * np.sin(x) * np.exp(-x * x) + 2 * x / (1 + x * x),
        lambda x, y, l: jnp.sin(x) * jnp.exp(-x * x) + jnp.log(1 + x * x),
    ),
    Elementwise(
        "relu",
        "greatest(x, 0.0)",
        "CASE WHEN x >= 0 THEN 1.0 ELSE 0.0 END",
        lambda x, y, l: (x >= 0).astype(np.float64),
        lambda x, y, l: jnp.maximum(x, 0.0),
    ),
    Elementwise(
        "squared error",
        "(0.8 * x + 0.3 - y) * (0.8 * x + 0.3 - y)",
        "1.6 * (0.8 * x + 0.3 - y)",
        lambda x, y, l: 1.6 * (0.8 * x + 0.3 - y),
        lambda x, y, l: (0.8 * x + 0.3 - y) ** 2,
    ),
    Elementwise(
        "logistic loss",
        "ln(1 + exp(-l * (0.8 * x + 0.3)))",
        "-0.8 * l / (1 + exp(l * (0.8 * x + 0.3)))",
        lambda x, y, l: -0.8 * l / (1 + np.exp(l * (0.8 * x + 0.3))),
        lambda x, y, l: jnp.log(1 + jnp.exp(-l * (0.8 * x + 0.3))),
    ),
    Elementwise(
        # y ~ N(0.5, σ²) with x = ln σ.
        "Gaussian NLL",
        "x + 0.9189385332046727 + (y - 0.5) * (y - 0.5) * exp(-2 * x) / 2",
        "1 - (y - 0.5) * (y - 0.5) * exp(-2 * x)",
        lambda x, y, l: 1 - (y - 0.5) * (y - 0.5) * np.exp(-2 * x),
        lambda x, y, l: x + 0.9189385332046727 + (y - 0.5) ** 2 * jnp.exp(-2 * x) / 2,
    ),
    Elementwise(
        "softplus",
        "ln(1 + exp(x))",
        "1 / (1 + exp(-x))",
        lambda x, y, l: 1 / (1 + np.exp(-x)),
        lambda x, y, l: jnp.log(1 + jnp.exp(x)),
    ),
    Elementwise(
        "tanh layer",
        "0.5 * tanh(1.2 * x - 0.3) - 0.8 * tanh(0.4 * x + 0.9)",
        "0.6 * (1 - tanh(1.2 * x - 0.3) * tanh(1.2 * x - 0.3)) - 0.32 * (1 - tanh(0.4 * x + 0.9) * tanh(0.4 * x + 0.9))",
        lambda x, y, l: 0.6 * (1 - np.tanh(1.2 * x - 0.3) ** 2) - 0.32 * (1 - np.tanh(0.4 * x + 0.9) ** 2),
        lambda x, y, l: 0.5 * jnp.tanh(1.2 * x - 0.3) - 0.8 * jnp.tanh(0.4 * x + 0.9),
    ),
]


def machine() -> dict[str, str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    memory_kb = next(
        (int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")),
        0,
    )
    import datafusion

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{memory_kb / 2**20:.0f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "datafusion (PyPI)": datafusion.__version__,
        "numpy": np.__version__,
        "jax": jax.__version__ if jax is not None else "not installed",
    }


def elementwise(rows: int, repeats: int) -> list[dict]:
    """P1–P3: one derivative over `rows` points, five ways, side by side."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-2.0, 2.0, rows)
    y = rng.uniform(-2.0, 2.0, rows)
    l = rng.choice([-1.0, 1.0], rows)
    ctx = AutogradContext()
    pieces = 2 * max(1, rows // 500_000)
    batches = [
        pa.RecordBatch.from_pydict({"x": xs, "y": ys, "l": ls})
        for xs, ys, ls in zip(np.array_split(x, pieces), np.array_split(y, pieces), np.array_split(l, pieces))
    ]
    ctx.register_record_batches("data", [batches[0::2], batches[1::2]])
    data_jax = tuple(jnp.asarray(v) for v in (x, y, l)) if jax is not None else None

    def sql_sum(expression: str) -> Callable[[], float]:
        query = f"SELECT SUM({expression}) AS s FROM data"
        return lambda: ctx.sql(query).to_pydict()["s"][0]

    results = []
    for case in ELEMENTWISE:
        variants: dict[str, Callable[[], object]] = {
            "sql_grad": sql_sum(f"grad({case.f}, x)"),
            "sql_by_hand": sql_sum(case.derivative_sql),
            "numpy": lambda case=case: float(np.sum(case.derivative_numpy(x, y, l))),
        }
        if jax is not None:
            summed = jax.jit(lambda v, w, s, f=case.f_jax: jnp.sum(jax.vmap(jax.grad(f))(v, w, s)))
            variants["jax"] = lambda summed=summed: float(summed(*data_jax).block_until_ready())
        values = {name: float(run()) for name, run in variants.items()}
        for name, value in values.items():
            check(f"P1 {case.name}: {name}'s sum against numpy's", max_relative_difference(value, values["numpy"]))
        timings = interleaved(variants, repeats)
        results.append({"name": case.name, "f": case.f, "timings": timings})
    return results


def planning_bridge(repeats: int) -> dict[str, Timing]:
    """P5 (Python): planning eight markers through the SQL bridge, against no markers, and the
    bridge's two parts on their own: rewriting the text (parse, differentiate, print) and
    DataFusion planning the rewritten text."""
    functions = [line for line in (HERE / "functions.txt").read_text().splitlines() if line.strip()]
    table = pa.RecordBatch.from_pydict({"x": [1.0, -0.5], "y": [2.0, 0.25]})
    bridged, plain = AutogradContext(), SessionContext()
    for ctx in (bridged, plain):
        ctx.register_record_batches("t", [[table]])
    markers = "SELECT " + ", ".join(f"grad({f}, x)" for f in functions) + " FROM t"
    primal = "SELECT " + ", ".join(functions) + " FROM t"
    relations = catalog(plain)
    rewritten = rewrite_sql(markers, relations)
    return interleaved(
        {
            "baseline": lambda: plain.sql(primal).optimized_logical_plan(),
            "bridge": lambda: bridged.sql(markers).optimized_logical_plan(),
            "rewrite": lambda: rewrite_sql(markers, relations),
            "rewritten": lambda: plain.sql(rewritten).optimized_logical_plan(),
        },
        repeats,
    )


def criterion(quick: bool, out: Path) -> dict[str, Timing]:
    """P4 and P5 (Rust): runs the criterion benches and reads their samples."""
    home = out / "criterion"
    env = dict(os.environ, CRITERION_HOME=str(home), AUTOGRAD_BENCH_ROWS="20000" if quick else "1000000")
    env.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache/datafusion-autograd/target"))
    # The quick run reuses the test build; the full run measures an optimised build.
    profile = ["--profile", "dev"] if quick else []
    command = ["cargo", "bench", "--locked", *profile, "-p", "datafusion-autograd", "--bench", "nesting",
               "-p", "datafusion-autograd-ffi", "--bench", "planning", "--", *(["--quick"] if quick else [])]
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    timings = {}
    for sample in home.glob("*/*/new/sample.json"):
        data = json.loads(sample.read_text())
        per_iteration = [t / n / 1e9 for t, n in zip(data["times"], data["iters"])]
        timings[f"{sample.parents[2].name}/{sample.parents[1].name}"] = Timing(per_iteration)
    return timings


def mlp(quick: bool, out: Path) -> dict:
    """P6: the digits MLP's step time, its backward pass wired by hand in SQL, formed by
    gradient(), and in numpy, side by side (trained and checked by its own script)."""
    run = mlp_digits.main(quick=quick, out=out)
    keys = (
        "steps", "sql_step_seconds", "gradient_step_seconds", "numpy_step_seconds", "test_accuracy",
        "gradient_test_accuracy", "sql_max_rel_loss_diff", "gradient_max_rel_loss_diff", "hand_wired_statements",
        "gradient_statements", "gradient_kept",
    )
    return {key: run[key] for key in keys}


def plot_elementwise(results: list[dict], path: Path) -> None:
    variants = [v for v in ("sql_grad", "sql_by_hand", "numpy", "jax") if v in results[0]["timings"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        medians = [r["timings"][variant].median for r in results]
        low = [m - min(r["timings"][variant].seconds) for m, r in zip(medians, results)]
        high = [max(r["timings"][variant].seconds) - m for m, r in zip(medians, results)]
        positions = np.arange(len(results)) + i * width
        ax.bar(positions, medians, width, yerr=[low, high], capsize=3, label=variant.replace("_", " "))
    ax.set_xticks(np.arange(len(results)) + width * (len(variants) - 1) / 2, [r["name"] for r in results])
    ax.set_ylabel("seconds (median, min–max)")
    ax.set_title("P1–P3: one derivative over every row")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_nesting(sizes: list[dict], timings: dict[str, Timing], path: Path) -> None:
    depths = [s["depth"] for s in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("primal_nodes", "f_d itself"), ("tree_nodes", "derivative, tree nodes"), ("distinct_nodes", "derivative, distinct subexpressions")):
        left.loglog(depths, [s[key] for s in sizes], "o-", base=2, label=label)
    left.set_xlabel("nesting depth d")
    left.set_ylabel("nodes")
    left.legend()
    for group, label in (("nesting_planning", "planning"), ("nesting_planning_written_out", "planning, derivative written out"),
                         ("nesting_execution", "execution")):
        right.loglog(depths, [timings[f"{group}/{d}"].median for d in depths], "o-", base=2, label=label)
    right.loglog(depths, [timings[f"nesting_execution/{depths[0]}"].median * d / depths[0] for d in depths], "k:", base=2, label="linear")
    right.set_xlabel("nesting depth d")
    right.set_ylabel("seconds (median)")
    right.legend()
    fig.suptitle("P4: f_d = tanh(1.5·f_{d−1} + 0.1), SUM(grad(f_d, x))")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(quick: bool, rows: int, host: dict, p1: list[dict], sizes: list[dict], rust: dict[str, Timing],
           bridge: dict[str, Timing], p6: dict, p7: list[gradient_cost.Case]) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/run.py{' --quick' if quick else ''}`.", ""]
    lines += ["| machine | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in host.items()] + [""]

    has_jax = "jax" in p1[0]["timings"]
    lines += [f"### P1–P3: `SELECT SUM(grad(f, x))` over {rows:,} rows", ""]
    header = "| f | SQL grad | SQL by hand | numpy | " + ("JAX jit(vmap(grad)) | " if has_jax else "") + "grad / by hand | grad / numpy |" + (" grad / JAX |" if has_jax else "")
    lines += [header, "|" + " --- |" * (header.count("|") - 1)]
    for r in p1:
        t = r["timings"]
        row = f"| `{r['f']}` | {t['sql_grad'].span()} | {t['sql_by_hand'].span()} | {t['numpy'].span()} | "
        if has_jax:
            row += f"{t['jax'].span()} | "
        row += f"{t['sql_grad'].median / t['sql_by_hand'].median:.2f} | {t['sql_grad'].median / t['numpy'].median:.2f} |"
        if has_jax:
            row += f" {t['sql_grad'].median / t['jax'].median:.2f} |"
        lines.append(row)
    if not has_jax:
        lines += ["", "JAX is not installed, so P3 was not measured (`pip install '.[jax]'`)."]

    lines += ["", "### P4: nesting depth (Rust, criterion, one thread)", "",
              "| depth | nodes of f_d | derivative: tree nodes | derivative: distinct subexpressions | planning | "
              "planning, derivative written out | execution |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in sizes:
        d = s["depth"]
        lines.append(f"| {d} | {s['primal_nodes']} | {s['tree_nodes']} | {s['distinct_nodes']} | "
                     f"{rust[f'nesting_planning/{d}'].span()} | {rust[f'nesting_planning_written_out/{d}'].span()} | "
                     f"{rust[f'nesting_execution/{d}'].span()} |")

    lines += ["", "### P5: planning a query with eight markers, per marker", "",
              "| path | planning the query | baseline (no markers) | overhead per marker |", "| --- | --- | --- | --- |"]
    base = rust["planning/baseline"]
    for path, key in (("native, in-planner (Rust)", "planning/native"), ("FFI, in-planner across dlopen (Rust)", "planning/ffi")):
        lines.append(f"| {path} | {rust[key].span()} | {base.span()} | {format_seconds((rust[key].median - base.median) / 8)} |")
    lines.append(f"| Python SQL bridge (PyPI datafusion) | {bridge['bridge'].span()} | {bridge['baseline'].span()} | "
                 f"{format_seconds((bridge['bridge'].median - bridge['baseline'].median) / 8)} |")
    lines += ["", "The bridge's overhead in parts, per marker: rewriting the text (parsing each marker's "
              f"arguments, differentiating, printing) {format_seconds(bridge['rewrite'].median / 8)}; "
              "DataFusion planning the rewritten statement rather than the one without markers "
              f"{format_seconds((bridge['rewritten'].median - bridge['baseline'].median) / 8)} "
              f"({bridge['rewritten'].span()} for the statement)."]

    lines += p6_section(p6)
    lines += gradient_cost.section(p7)
    lines += ["", "![P1–P3](results/elementwise.png)", "", "![P4](results/nesting.png)", "",
              "![P7](results/gradient_cost.png)"]
    return "\n".join(lines) + "\n"


def p6_section(p6: dict | str) -> list[str]:
    """P6's lines; a string is the section of an earlier run, kept as it was."""
    if isinstance(p6, str):
        return ["", p6.rstrip(), "", "P6 was not measured in this run: its numbers are those of the run before."]
    numpy_step = p6["numpy_step_seconds"]
    lines = ["", "### P6: one MLP training step (64 → 32 tanh → 10 softmax, batch 64)", "",
              f"{p6['steps']} steps each, run in turn in one process; times are means per step, "
              "including reading the step's loss back.", "",
              "| backward pass | statements per step | time per step | / numpy | test accuracy | max relative loss difference vs numpy |",
              "| --- | --- | --- | --- | --- | --- |",
              f"| SQL, wired by hand with vjp() | {p6['hand_wired_statements']} | {format_seconds(p6['sql_step_seconds'])} | "
              f"{p6['sql_step_seconds'] / numpy_step:.0f} | {p6['test_accuracy']:.4f} | {p6['sql_max_rel_loss_diff']:.1e} |",
              f"| SQL, grad over the loss CTE (one reverse pass) | {p6['gradient_statements']} | {format_seconds(p6['gradient_step_seconds'])} | "
              f"{p6['gradient_step_seconds'] / numpy_step:.0f} | {p6['gradient_test_accuracy']:.4f} | {p6['gradient_max_rel_loss_diff']:.1e} |",
              f"| numpy, derived by hand | — | {format_seconds(numpy_step)} | 1 | — | — |"]
    kept = p6["gradient_kept"]

    def times(n: int) -> str:
        return "once" if n == 1 else f"{n} times"

    lines += ["", f"The backward statement, the same text at every step, was formed {times(kept['formed'])} and "
              f"rewritten from what its context kept {times(kept['reused'])}; its reverse pass was planned "
              f"{times(kept['planned'])} and ran copies of the kept plans {times(kept['copied'])} "
              "(`ag.kept_statistics`; a pass is planned again when a table it reads changes size)."]
    return lines


def previous_p6() -> str:
    """The P6 section of the results in ``benchmarks/README.md``, without the note a kept section carries."""
    text = README.read_text()
    results = text[text.index(RESULTS_BEGIN):text.index(RESULTS_END)]
    section = results[results.index("### P6"):results.index("![P1–P3]")]
    return section.split("\nP6 was not measured")[0]


def main(quick: bool = False, keep_p6: bool = False) -> Path:
    if not quick:
        require_release_build()
    out = RESULTS / ("quick" if quick else "")
    out.mkdir(parents=True, exist_ok=True)
    rows, repeats = (200_000, 3) if quick else (10_000_000, 11)
    host = machine()
    print(f"P1–P3: {rows:,} rows, {repeats} interleaved rounds", flush=True)
    p1 = elementwise(rows, repeats)
    print("P4, P5: criterion benches", flush=True)
    rust = criterion(quick, out)
    sizes = json.loads((out / "criterion" / "nesting_sizes.json").read_text())
    bridge = planning_bridge(repeats * 30)
    if keep_p6:
        p6: dict | str = previous_p6()
    else:
        print("P6: digits MLP", flush=True)
        p6 = mlp(quick, out)
    p7 = gradient_cost.run(quick)

    plot_elementwise(p1, out / "elementwise.png")
    plot_nesting(sizes, rust, out / "nesting.png")
    gradient_cost.plot(p7, out / "gradient_cost.png")
    markdown = report(quick, rows, host, p1, sizes, rust, bridge, p6, p7)
    (out / "RESULTS.md").write_text(markdown)
    if not quick:
        text = README.read_text()
        start, end = text.index(RESULTS_BEGIN) + len(RESULTS_BEGIN), text.index(RESULTS_END)
        README.write_text(text[:start] + "\n" + markdown + text[end:])
    print(markdown)
    return out


if __name__ == "__main__":
    argv = sys.argv[1:]
    keep_p6 = "--keep-p6" in argv
    argv = [a for a in argv if a != "--keep-p6"]
    main(**arguments(__doc__, quick="small sizes and the debug build: a smoke run", argv=argv), keep_p6=keep_p6)
