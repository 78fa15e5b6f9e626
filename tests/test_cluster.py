"""Differentiable SQL from Python on a Ballista 54.1 cluster of processes on
loopback (``LocalCluster``), over Parquet files split in several parts and
an in-memory parameter table, against a local ``SessionContext`` and numpy;
both executors run tasks; the servers stop, with the test and with a Python
process that dies; what does not carry over fails with the error a user sees.

``pytest -s tests/test_cluster.py`` prints the training trajectory and the
time per step on the cluster and locally.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionConfig, SessionContext, col

import datafusion_autograd as ag
from datafusion_autograd.cluster import ClusterContext, ClusterError, LocalCluster, connect

SAMPLES, FEATURES, FILES, PARTITIONS = 4000, 3, 4, 2

LOGISTIC = """SELECT AVG(ln(1 + exp(-y.sign * p.z))) AS l FROM
  (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p
  JOIN y ON p.s = y.s"""


def write_parts(directory: Any, columns: Dict[str, np.ndarray]) -> str:
    """``columns`` as FILES Parquet files in ``directory``, in order."""
    directory.mkdir()
    table = pa.table(columns)
    rows = len(table) // FILES
    for f in range(FILES):
        pq.write_table(table.slice(f * rows, rows), directory / f"part-{f}.parquet")
    return str(directory)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    rng = np.random.default_rng(19)
    x = rng.normal(size=(SAMPLES, FEATURES))
    sign = np.where(x @ np.array([1.5, -2.0, 0.5]) + 0.3 * rng.normal(size=SAMPLES) > 0, 1.0, -1.0)
    root = tmp_path_factory.mktemp("cluster-data")
    s, i = np.meshgrid(np.arange(SAMPLES), np.arange(FEATURES), indexing="ij")
    return {
        "x": x,
        "sign": sign,
        "points": write_parts(root / "points", {**{f"x{k}": x[:, k] for k in range(FEATURES)}, "sign": sign}),
        "x_long": write_parts(root / "x", {"s": s.ravel(), "i": i.ravel(), "v": x.ravel()}),
        "y": write_parts(root / "y", {"s": np.arange(SAMPLES), "sign": sign}),
    }


def alive(pid: int) -> bool:
    """Whether the process ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def servers_of_this_process() -> List[int]:
    """The cluster servers this Python process started that still run."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if parent == os.getpid() and b"datafusion_autograd.cluster" in command and alive(int(entry)):
            found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(executors=2) as running:
        pids = running.pids
        assert len(pids) == 3 and all(alive(p) for p in pids)
        yield running
    assert not running.running()
    assert not any(alive(p) for p in pids), pids
    assert servers_of_this_process() == []


def weights_batch(w: np.ndarray) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"i": np.arange(len(w)), "w": w})


def register(ctx: Any, data: Dict[str, Any], w: np.ndarray) -> Any:
    ctx.register_parquet("points", data["points"])
    ctx.register_parquet("x", data["x_long"])
    ctx.register_parquet("y", data["y"])
    ctx.register_record_batches("w", [[weights_batch(w)]])
    return ctx


def contexts(cluster: LocalCluster, data: Dict[str, Any], w: np.ndarray) -> "tuple[ClusterContext, SessionContext]":
    remote = register(connect(cluster.url, target_partitions=PARTITIONS), data, w)
    local = register(ag.register(SessionContext(SessionConfig().with_target_partitions(PARTITIONS))), data, w)
    return remote, local


def assert_relative(got: np.ndarray, want: np.ndarray, scale: np.ndarray, tolerance: float = 1e-12) -> None:
    """``|got - want| <= tolerance * scale``, element by element."""
    got, want, scale = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (got, want, scale))
    error = np.abs(got - want) / scale
    assert np.all(error <= tolerance), (got, want, error.max())


def column(frame: Any, name: str) -> np.ndarray:
    return np.asarray(frame.to_pydict()[name], dtype=float)


def logistic_gradient(x: np.ndarray, sign: np.ndarray, w: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """The gradient of the mean logistic loss at ``w``, and the scale of its
    summation's rounding (the mean absolute value of the terms)."""
    terms = x * (-sign / (1 + np.exp(sign * (x @ w))))[:, None]
    return terms.mean(axis=0), np.abs(terms).mean(axis=0)


def test_marker_queries_equal_a_local_session_and_numpy(cluster: LocalCluster, data: Dict[str, Any]) -> None:
    remote, local = contexts(cluster, data, np.zeros(FEATURES))
    x0, x1, x2, sign = (data["x"][:, 0], data["x"][:, 1], data["x"][:, 2], data["sign"])
    a, b, c = 0.3, -0.2, 0.1
    margin = -sign * (a * x0 + b * x1 + c * x2)
    dloss = -sign / (1 + np.exp(-margin))
    cases = [
        (
            "SELECT AVG(grad(ln(1 + exp(-sign * (a * x0 + b * x1 + c * x2))), a)) AS d FROM "
            "(SELECT *, CAST(0.3 AS DOUBLE) AS a, CAST(-0.2 AS DOUBLE) AS b, CAST(0.1 AS DOUBLE) AS c FROM points)",
            dloss * x0 / SAMPLES,
        ),
        ("SELECT SUM(jvp(exp(0.5 * x0) * x1, x0, x2)) AS d FROM points", 0.5 * np.exp(0.5 * x0) * x1 * x2),
        ("SELECT SUM(vjp(sin(x0 * x1), x1, sign)) AS d FROM points", np.cos(x0 * x1) * x0 * sign),
    ]
    for sql, terms in cases:
        on_cluster = column(remote.sql(sql), "d")
        here = column(local.sql(sql), "d")
        scale = np.abs(terms).sum()
        assert_relative(on_cluster, here, scale)
        assert_relative(on_cluster, terms.sum(), scale)
    # Per row, too: every value equal.
    rows = "SELECT sign, grad(x0 * x0 * x1, x0) AS d FROM points ORDER BY x0"
    order = np.argsort(x0)
    assert_relative(column(remote.sql(rows), "d"), column(local.sql(rows), "d"), 1.0)
    assert_relative(column(remote.sql(rows), "d"), (2 * x0 * x1)[order], np.abs(2 * x0 * x1)[order])


def test_gradient_with_an_in_memory_parameter_table(cluster: LocalCluster, data: Dict[str, Any]) -> None:
    w = np.array([0.4, -0.3, 0.2])
    remote, local = contexts(cluster, data, w)
    want, scale = logistic_gradient(data["x"], data["sign"], w)
    table_function = f"SELECT i, w, grad FROM gradient('{LOGISTIC}', 'w.w') ORDER BY i"
    marker = f"WITH loss AS ({LOGISTIC}) SELECT i, w, grad((SELECT l FROM loss), w) AS grad FROM w ORDER BY i"
    for sql in (table_function, marker):
        on_cluster = remote.sql(sql).to_pydict()
        here = local.sql(sql).to_pydict()
        assert on_cluster["i"] == [0, 1, 2] and on_cluster["w"] == list(w)
        assert_relative(on_cluster["grad"], here["grad"], scale)
        assert_relative(on_cluster["grad"], want, scale)
    # ag.gradient on a cluster context: the frame of the cluster.
    frame = ag.gradient(remote, LOGISTIC, "w.w")
    table = frame.to_arrow_table().sort_by("i")
    assert table.column_names == ["i", "w", "grad"]
    assert_relative(table.column("grad").to_numpy(), want, scale)
    batches = frame.collect()
    assert all(isinstance(b, pa.RecordBatch) for b in batches) and sum(len(b) for b in batches) == FEATURES


def test_planning_and_explain_compute_no_gradient(cluster: LocalCluster, data: Dict[str, Any]) -> None:
    remote, _ = contexts(cluster, data, np.array([0.4, -0.3, 0.2]))
    sql = f"SELECT i, grad FROM gradient('{LOGISTIC}', 'w.w')"

    def tasks_of(run: Any) -> int:
        before = sum(cluster.tasks_by_executor().values())
        run()
        return sum(cluster.tasks_by_executor().values()) - before

    assert tasks_of(lambda: remote.sql(sql)) == 0
    # EXPLAIN runs as a job of its own, no larger than the EXPLAIN of a plain scan.
    assert tasks_of(lambda: remote.sql(f"EXPLAIN {sql}").to_pydict()) == tasks_of(
        lambda: remote.sql("EXPLAIN SELECT i, w FROM w").to_pydict()
    )
    # Running it runs the gradient's stages as jobs.
    assert tasks_of(lambda: remote.sql(sql).to_pydict()) > tasks_of(lambda: remote.sql("SELECT i, w FROM w").to_pydict())


def test_both_executors_ran_tasks(cluster: LocalCluster, data: Dict[str, Any]) -> None:
    remote, _ = contexts(cluster, data, np.zeros(FEATURES))
    remote.sql("SELECT COUNT(*) AS n FROM x").to_pydict()
    tasks = cluster.tasks_by_executor()
    assert set(tasks) == set(cluster.executor_ids)
    assert all(n > 0 for n in tasks.values()), tasks


def test_recursive_ctes_do_not_distribute(cluster: LocalCluster) -> None:
    remote = connect(cluster.url)
    sql = "WITH RECURSIVE c(n) AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM c WHERE n < 3) SELECT * FROM c"
    with pytest.raises(ClusterError, match="recursive CTEs do not run on a Ballista cluster: datafusion-proto 54 cannot encode RecursiveQueryExec and WorkTableExec"):
        remote.sql(sql).collect()
    assert ag.register(SessionContext()).sql(sql).to_pydict() == {"n": [1, 2, 3]}


def test_in_memory_tables_travel_within_the_grpc_limit(cluster: LocalCluster) -> None:
    remote = connect(cluster.url)
    small = 1_000_000  # 8 MB of doubles: inside the 16 MiB of one message
    remote.register_record_batches("t", [[pa.RecordBatch.from_pydict({"v": np.ones(small)})]])
    assert remote.sql("SELECT SUM(v) AS s FROM t").to_pydict() == {"s": [float(small)]}
    remote.deregister_table("t")
    remote.register_record_batches("t", [[pa.RecordBatch.from_pydict({"v": np.ones(2_500_000)})]])
    with pytest.raises(ClusterError, match=r"the plan to send to the scheduler is \d+ bytes, more than the 16777216 bytes of a gRPC message"):
        remote.sql("SELECT SUM(v) AS s FROM t").collect()


def test_bad_input_is_a_clear_error(cluster: LocalCluster, data: Dict[str, Any]) -> None:
    remote, _ = contexts(cluster, data, np.zeros(FEATURES))
    with pytest.raises(ClusterError, match="table 'datafusion.public.missing' not found"):
        remote.sql("SELECT * FROM missing")
    with pytest.raises(ag.UnknownParameter):
        remote.sql(f"SELECT * FROM gradient('{LOGISTIC}', 'w.nope')").collect()
    with pytest.raises(ClusterError, match="not a pyarrow RecordBatch"):
        remote.register_record_batches("bad", [[1, 2]])
    with pytest.raises(ClusterError, match="no batch for bad"):
        remote.register_record_batches("bad", [[]])
    with pytest.raises(ClusterError, match=r"df://host:port, not \"localhost\""):
        connect("localhost")
    with pytest.raises(ClusterError, match="target_partitions must be at least 1"):
        connect(cluster.url, target_partitions=0)
    # Nothing listens on port 1: the query fails, the process goes on.
    with pytest.raises(ClusterError):
        connect("df://127.0.0.1:1").sql("SELECT 1 AS one").collect()
    with pytest.raises(ValueError):
        LocalCluster(executors=0)


def test_servers_stop_when_python_dies() -> None:
    script = (
        "from datafusion_autograd.cluster import LocalCluster\n"
        "import sys, time\n"
        "cluster = LocalCluster(executors=2).start()\n"
        "print(*cluster.pids, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 3 and all(alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), [p for p in pids if alive(p)]


STEPS, LEARNING_RATE = 8, 2.0


def test_training_on_the_cluster_follows_the_local_run(cluster: LocalCluster, data: Dict[str, Any]) -> None:
    """Logistic regression, one gradient() query per step, the weights an
    in-memory table re-registered after each step, on both sessions."""
    w_cluster = w_local = np.zeros(FEATURES)
    remote, local = contexts(cluster, data, w_cluster)
    loss_of = lambda w: np.mean(np.log1p(np.exp(-data["sign"] * (data["x"] @ w))))  # noqa: E731
    losses, times_cluster, times_local = [loss_of(w_cluster)], [], []
    for step in range(1, STEPS + 1):
        started = time.perf_counter()
        g_cluster = ag.gradient(remote, LOGISTIC, "w.w").to_arrow_table().sort_by("i").column("grad").to_numpy()
        times_cluster.append(time.perf_counter() - started)
        started = time.perf_counter()
        g_local = column(ag.gradient(local, LOGISTIC, "w.w").sort(col("i")), "grad")
        times_local.append(time.perf_counter() - started)
        want, scale = logistic_gradient(data["x"], data["sign"], w_cluster)
        assert_relative(g_cluster, g_local, scale)
        assert_relative(g_cluster, want, scale)
        w_cluster, w_local = w_cluster - LEARNING_RATE * g_cluster, w_local - LEARNING_RATE * g_local
        assert_relative(w_cluster, w_local, np.maximum(np.abs(w_local), 1e-300))
        for ctx, w in ((remote, w_cluster), (local, w_local)):
            ctx.deregister_table("w")
            ctx.register_record_batches("w", [[weights_batch(w)]])
        losses.append(loss_of(w_cluster))
        print(f"step {step}: w = {w_cluster}, loss {losses[-1]:.6f}")
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    print(
        f"median step: cluster {1e3 * np.median(times_cluster):.0f} ms, "
        f"local {1e3 * np.median(times_local):.0f} ms ({SAMPLES} samples × {FEATURES} features in {FILES} files)"
    )
