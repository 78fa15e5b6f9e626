"""A PostgreSQL server of its own for the tests: a cluster in a temporary
directory, listening only on a unix socket there, removed when done.

PostgreSQL refuses to run as root, so when the tests do, the server runs as
the ``postgres`` system user (which Debian's package creates) and the root
process connects over the socket, which the cluster trusts.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Optional

SERVER_USER = "postgres"


def server_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: on ``PATH``, or the
    newest of Debian's ``/usr/lib/postgresql/<version>/bin``."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    installed = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not installed:
        raise RuntimeError(
            "PostgreSQL's server programs (initdb, pg_ctl) were not found; "
            "`bash scripts/dev.sh setup` installs them"
        )
    return Path(installed[-1]).parent


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Starts a fresh cluster and yields its connection string; the server is
    stopped and its directory removed on the way out, whatever happened."""
    binaries = server_binaries()
    # A short path: a unix socket's path must fit in about 100 bytes.
    home = Path(tempfile.mkdtemp(prefix="ag-pg-"))
    run_as: Optional[str] = None
    if os.geteuid() == 0:
        run_as = SERVER_USER
        account = pwd.getpwnam(SERVER_USER)
        os.chown(home, account.pw_uid, account.pw_gid)
    data, log = home / "data", home / "server.log"

    def run(*command: str) -> None:
        subprocess.run(command, check=True, user=run_as, capture_output=True, cwd=home)

    started = False
    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
            "--no-sync", "-E", "UTF8", "--locale=C")
        try:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                "-o", f"-k {home} -c listen_addresses='' -F", "start")
        except subprocess.CalledProcessError as error:
            server_log = log.read_text() if log.exists() else "(no log)"
            raise RuntimeError(f"PostgreSQL did not start: {error.stderr!r}\n{server_log}") from error
        started = True
        yield f"host={home} dbname=postgres user=postgres"
    finally:
        if started:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)
