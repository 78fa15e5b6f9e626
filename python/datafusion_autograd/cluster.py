"""Differentiable SQL on an Apache DataFusion Ballista 54.1 cluster.

``connect(url)`` gives a session on the scheduler at ``url``
(``"df://host:port"``), backed by the Ballista client inside this package's
extension. Queries are planned in this process — ``grad``, ``jvp`` and ``vjp``
are replaced by their derivatives and ``gradient(…)`` by the plans of its
stages — and sent as physical plans, so a stock scheduler and stock executors
run them with DataFusion's built-in functions only. Tables registered from
memory, and each stage of a gradient, travel inside the plans that read them.

``LocalCluster(executors=2)`` runs a scheduler and executors on this machine,
each a process of its own (``python -m datafusion_autograd.cluster scheduler``
and ``… executor HOST:PORT``) on 127.0.0.1 and ports the OS picks. They stop
when the ``with`` block ends, and also when this process dies: each watches
the pipe to its standard input, whose writing end only this process holds.

>>> import pyarrow as pa
>>> with LocalCluster(executors=2) as cluster:
...     ctx = connect(cluster.url)
...     ctx.register_record_batches("w", [[pa.RecordBatch.from_pydict({"i": [0, 1], "w": [1.5, -2.0]})]])
...     ctx.sql("SELECT i, grad FROM gradient('SELECT SUM(w * w * w) FROM w', 'w.w') ORDER BY i").to_pydict()
{'i': [0, 1], 'grad': [6.75, 12.0]}

Running the servers from the command line:
``python -m datafusion_autograd.cluster scheduler`` prints
``listening 127.0.0.1:PORT``; ``python -m datafusion_autograd.cluster executor
127.0.0.1:PORT [--slots N]`` prints ``ready ID``. Each runs until its standard
input ends.
"""

from __future__ import annotations

import argparse
import queue
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import IO, Dict, List, Optional, Sequence, Type

from datafusion_autograd._native import (
    ClusterContext,
    ClusterError,
    ClusterFrame,
    cluster_connect,
    serve_executor,
    serve_scheduler,
)

__all__ = ["ClusterContext", "ClusterError", "ClusterFrame", "LocalCluster", "connect"]


def connect(url: str, *, target_partitions: Optional[int] = None) -> ClusterContext:
    """A session on the Ballista scheduler at ``url`` (``"df://host:port"``).

    ``target_partitions`` is how many partitions a scan is split into (the
    number of cores when not given); each is a task an executor runs. Nothing
    is contacted until a query runs, so a wrong address shows then, as a
    ``ClusterError`` naming it.

    >>> ctx = connect("df://127.0.0.1:1")
    >>> ctx.url
    'df://127.0.0.1:1'
    >>> connect("127.0.0.1:1")
    Traceback (most recent call last):
    ...
    _native.ClusterError: Invalid or Unsupported Configuration: a Ballista scheduler's address is df://host:port, not "127.0.0.1:1"
    """
    return cluster_connect(url, target_partitions)


class _Lines:
    """The lines a child writes, read by a thread so that waiting can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._lines.put(line.rstrip("\n"))
        except (OSError, ValueError):  # closed by ``stop`` while reading
            pass
        self._lines.put(None)

    def next(self, timeout: float, what: str) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ClusterError(f"{what}: no answer within {timeout} s") from None
        if line is None:
            raise ClusterError(f"{what}: the process ended")
        return line


class LocalCluster:
    """A Ballista 54.1 scheduler and ``executors`` executors, each a process of
    its own on 127.0.0.1, for as long as the ``with`` block runs.

    Each executor has ``slots`` task slots. ``url`` is the scheduler's
    ``df://127.0.0.1:PORT``; ``pids`` are the processes' ids, scheduler
    first. Entering waits (up to ``timeout`` seconds) until every executor
    has registered with the scheduler; leaving stops them all and waits for
    them to exit.

    >>> with LocalCluster(executors=1) as cluster:
    ...     connect(cluster.url).sql("SELECT 1 + 1 AS two").to_pydict()
    {'two': [2]}
    >>> cluster.running()
    False
    """

    def __init__(self, executors: int = 2, *, slots: int = 1, timeout: float = 30.0) -> None:
        if executors < 1 or slots < 1:
            raise ValueError("a LocalCluster needs at least one executor with one slot")
        self.executors = executors
        self.slots = slots
        self.timeout = timeout
        self.url = ""
        self.executor_ids: List[str] = []
        self._processes: List["subprocess.Popen[str]"] = []
        self._scheduler: Optional[_Lines] = None

    @property
    def pids(self) -> List[int]:
        return [p.pid for p in self._processes]

    def _spawn(self, *args: str) -> "subprocess.Popen[str]":
        process = subprocess.Popen(
            [sys.executable, "-m", "datafusion_autograd.cluster", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            close_fds=True,
        )
        self._processes.append(process)
        return process

    def start(self) -> "LocalCluster":
        """Starts the scheduler and the executors; returns once all have registered."""
        try:
            scheduler = self._spawn("scheduler")
            assert scheduler.stdout is not None
            self._scheduler = _Lines(scheduler.stdout)
            line = self._scheduler.next(self.timeout, "starting the scheduler")
            address = line.removeprefix("listening ")
            self.url = f"df://{address}"
            for _ in range(self.executors):
                executor = self._spawn("executor", address, "--slots", str(self.slots))
                assert executor.stdout is not None
                ready = _Lines(executor.stdout).next(self.timeout, "starting an executor")
                self.executor_ids.append(ready.removeprefix("ready "))
            registered = set()
            while registered != set(self.executor_ids):
                line = self._scheduler.next(self.timeout, "waiting for the executors to register")
                registered.add(line.removeprefix("executor "))
        except BaseException:
            self.stop()
            raise
        return self

    def tasks_by_executor(self) -> Dict[str, int]:
        """How many tasks of finished jobs each executor ran, by the
        scheduler's own records (every executor listed, zero included).
        """
        if self._scheduler is None or not self.running():
            raise ClusterError("the cluster is not running")
        stdin = self._processes[0].stdin
        assert stdin is not None
        stdin.write("tasks\n")
        stdin.flush()
        reply: List[str] = []
        while not reply or reply[0] != "tasks":
            reply = self._scheduler.next(self.timeout, "asking the scheduler for its tasks").split()
        counts = {executor: 0 for executor in self.executor_ids}
        for entry in reply[2:]:
            executor, count = entry.rsplit("=", 1)
            counts[executor] = int(count)
        return counts

    def running(self) -> bool:
        """Whether any of the cluster's processes still runs."""
        return any(p.poll() is None for p in self._processes)

    def stop(self) -> None:
        """Stops every process (by closing its input; killed if it has not
        exited within ``timeout`` seconds) and waits for them."""
        for process in reversed(self._processes):
            if process.stdin is not None and not process.stdin.closed:
                try:
                    process.stdin.close()
                except OSError:
                    pass
        deadline = time.monotonic() + self.timeout
        for process in self._processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalCluster(executors={self.executors}, url={self.url!r})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m datafusion_autograd.cluster scheduler | executor HOST:PORT [--slots N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m datafusion_autograd.cluster",
        description="Run a Ballista 54.1 scheduler or executor on 127.0.0.1 until standard input ends.",
    )
    servers = parser.add_subparsers(dest="server", required=True)
    servers.add_parser("scheduler", help="run a scheduler; prints 'listening HOST:PORT'")
    executor = servers.add_parser("executor", help="run an executor; prints 'ready ID'")
    executor.add_argument("scheduler", metavar="HOST:PORT", help="the scheduler's address")
    executor.add_argument("--slots", type=int, default=1, help="task slots (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.server == "scheduler":
            serve_scheduler()
        else:
            serve_executor(args.scheduler, args.slots)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
