"""TheraCharge itself under gunicorn for the tests: `theracharge serve` on 127.0.0.1, stopped by
PID. The same command an operator runs; the tests talk to it over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.ehr import free_port, wait_ready

THERACHARGE = str(Path(sys.executable).with_name("theracharge"))


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def workers(self) -> list[int]:
        """The PIDs of gunicorn's worker processes (children of the master)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


@contextmanager
def running_service(folder: Path, env: dict[str, str], workers: int = 2) -> Iterator[Service]:
    """`theracharge serve` with `env` (THERACHARGE_INSTANCE_DIR defaults into `folder`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    folder.mkdir(parents=True, exist_ok=True)
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("THERACHARGE_")},
        "THERACHARGE_INSTANCE_DIR": str(folder / "instance"),
        "THERACHARGE_PUBLIC_URL": url,
        **env,
    }
    full.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = folder / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [THERACHARGE, "serve", "--port", str(port), "--workers", str(workers)],
            env=full,
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(url, process, log)
    try:
        wait_ready("theracharge serve", process, f"{url}/healthz", (200,), log, seconds=60)
        yield service
    finally:
        service.stop()
