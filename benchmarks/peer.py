"""The peer's side of P7, run in a venv of its own: ddx (PyPI ``ddxdb``) pins ``datafusion`` 55.

Started by ``benchmarks.gradient_cost`` as ``<peer venv>/bin/python -m benchmarks.peer``
from the repository root. It reads one JSON request per line on stdin and answers each with
one JSON line on stdout, after a first line that says it is ready (``{"ready": true}``) or
why not (``{"error": …}``):

- ``{"load": directory, "tables": [name, …], "partitions": n}`` registers every
  ``<directory>/<name>.arrow`` (Arrow IPC) in a fresh ddx ``Context``, in ``n`` partitions;
- ``{"time": sql}`` runs the statement and answers its wall time, ``{"seconds": …}``;
- ``{"rows": sql}`` answers its rows, ``{"columns": {name: [values]}}``;
- ``{"peak": sql}`` answers the memory it needed, ``{"bytes": …}`` (``benchmarks.memory``).

A request that fails answers ``{"error": message}``, so the benchmark can say why.
Nothing here but the requests: it imports only ddx, pyarrow and the standard library.
"""

from __future__ import annotations

import json
import sys
import time

import pyarrow as pa
import pyarrow.ipc

from benchmarks.memory import peak_bytes


def main() -> None:
    try:
        from ddxdb import Context
    except ImportError as error:
        print(json.dumps({"error": f"ddx cannot be imported: {error}"}), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    ctx = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "load" in request:
                ctx = Context()
                for name in request["tables"]:
                    # Read into memory, not mapped: the data is resident before any call is measured.
                    with pa.OSFile(f"{request['load']}/{name}.arrow", "rb") as source:
                        table = pa.ipc.open_file(source).read_all()
                    batches = table.to_batches()
                    parts = request["partitions"]
                    ctx.register_record_batches(name, [batches[k::parts] for k in range(parts)])
                answer: dict = {"loaded": request["tables"]}
            elif "time" in request:
                started = time.perf_counter()
                ctx.sql(request["time"]).to_pydict()
                answer = {"seconds": time.perf_counter() - started}
            elif "rows" in request:
                answer = {"columns": ctx.sql(request["rows"]).to_pydict()}
            else:
                answer = {"bytes": peak_bytes(lambda: ctx.sql(request["peak"]).to_pydict())}
        except Exception as error:  # noqa: BLE001 - every failure is reported, named, to the benchmark
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
