"""A throwaway PostgreSQL server for the persistence tests (Debian's PostgreSQL on loopback).

The test command installs PostgreSQL when the machine lacks it; here a cluster is made in a
temporary folder and started on a free port. If it cannot start, the tests fail and say why:
they never skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.ehr import free_port


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise RuntimeError(
        f"PostgreSQL's {name} not found: run the tests with `make test`, which installs it"
    )


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the postgres user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextmanager
def running_postgres(folder: Path) -> Iterator[str]:
    """A fresh cluster; yields its SQLAlchemy URL; stops and removes it at the end."""
    data = folder / "pgdata"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    port = free_port()
    init = subprocess.run(
        _as_postgres(
            [_binary("initdb"), "-D", str(data), "-U", "theracharge", "--auth=trust", "-E", "UTF8"]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode:
        raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
    (folder / "port").write_text(str(port))
    _start(folder)
    try:
        yield f"postgresql+psycopg://theracharge@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([_binary("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
            check=False,
        )


def _start(folder: Path) -> None:
    port = int((folder / "port").read_text())
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = subprocess.run(
        _as_postgres(
            [
                _binary("pg_ctl"),
                "-D",
                str(folder / "pgdata"),
                "-o",
                options,
                "-l",  # the server's output to its log, never to our pipes (it would hold them)
                str(folder / "pg.log"),
                "-w",
                "start",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if start.returncode:
        log = (folder / "pg.log").read_text() if (folder / "pg.log").exists() else start.stderr
        raise RuntimeError(f"PostgreSQL did not start: {log[-2000:]}")


def restart_postgres(folder: Path) -> None:
    """Restart the cluster of `running_postgres(folder)` (fast shutdown: open connections are
    cut, as in a failover), on the same port and data."""
    subprocess.run(
        _as_postgres([_binary("pg_ctl"), "-D", str(folder / "pgdata"), "-m", "fast", "stop"]),
        capture_output=True,
        check=True,
    )
    _start(folder)
