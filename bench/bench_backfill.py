"""Benchmark: `theracharge backfill` on 1, 2 and 4 Celery workers against the sandbox EHR, next
to the EHR alone answering the same searches and transactions.

Run: `.venv/bin/python bench/bench_backfill.py [--visits 300] [--workers 1 2 4]` (needs the
sandbox EHR in .ehr-venv, PostgreSQL and redis-server: `make test` installs them). For each
number of workers N:
1. a fresh sekmet-fhir with the sample's visits (one billing day each); PostgreSQL and Redis on
   loopback; N `theracharge worker --concurrency 1` processes (N days decided at a time);
   `theracharge backfill --since` in a child process: the time from its start to its report
   (listing, queueing, every day decided and written; the first run writes, as after a
   payer-rule change), and the days/s;
2. the EHR alone: the same backfill decided in this process without a broker, N days at a time,
   on a second fresh server, recording every request (method, URL, body, thread); then a third
   fresh server answers exactly those requests replayed N threads at a time, nothing else in
   between.
Prints the wall times, days/s and the ratio ours / EHR alone. Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after site-packages: a compiled install is measured as such
sys.path.append(str(ROOT / "bench"))

from bench_live import recording, replay  # noqa: E402

from tests.ehr import load_sample, running_ehr  # noqa: E402
from tests.pg import running_postgres  # noqa: E402
from tests.redis_server import running_redis  # noqa: E402

SINCE = "2026-11-01"
THERACHARGE = str(Path(sys.executable).with_name("theracharge"))


def _env(
    database: str, broker: str | None, fhir: str, folder: Path, threads: int
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THERACHARGE_")}
    env.update(
        {
            "THERACHARGE_DATABASE_URL": database,
            "THERACHARGE_FHIR_BASE_URL": fhir,
            "THERACHARGE_WRITE_MODE": "direct",
            "THERACHARGE_INSTANCE_DIR": str(folder),
            "THERACHARGE_FHIR_CONCURRENCY": str(threads),
        }
    )
    if broker:
        env["THERACHARGE_BROKER_URL"] = broker
    return env


def on_workers(workers: int, visits: int, folder: Path, database: str, broker: str) -> float:
    with running_ehr(folder / f"ours-{workers}") as ehr:
        load_sample(ehr, visits=visits, seed=3, problem_rate=0.1)
        env = _env(database, broker, ehr.base_url, folder / "instance", workers)
        started: list[subprocess.Popen[bytes]] = []
        try:
            for n in range(workers):
                log = (folder / f"worker-{workers}-{n}.log").open("wb")
                started.append(
                    subprocess.Popen(
                        [THERACHARGE, "worker", "--concurrency", "1", "--name", f"w{n}@bench"],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            time.sleep(3)  # the workers connect to the broker
            began = time.perf_counter()
            done = subprocess.run(
                [THERACHARGE, "backfill", "--since", SINCE],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            took = time.perf_counter() - began
            if done.returncode != 0:
                raise RuntimeError(f"backfill exited {done.returncode}: {done.stdout}{done.stderr}")
            print(f"  {workers} worker(s): {done.stdout.strip().splitlines()[0]}")
            return took
        finally:
            for process in started:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)


def ehr_alone(workers: int, visits: int, folder: Path) -> tuple[float, int]:
    from plugin.commands import main as cli

    with running_ehr(folder / f"rec-{workers}") as ehr:
        load_sample(ehr, visits=visits, seed=3, problem_rate=0.1)
        database = f"sqlite:///{folder / f'rec-{workers}.db'}"
        os.environ.update(_env(database, None, ehr.base_url, folder / "instance", workers))
        os.environ.pop("THERACHARGE_BROKER_URL", None)
        with recording() as by_thread, contextlib.redirect_stdout(open(os.devnull, "w")):
            code = cli.main(["backfill", "--since", SINCE])
        if code != 0:
            raise RuntimeError(f"the in-process backfill exited {code}")
        base = ehr.base_url
        threads = [rs for rs in by_thread.values() if rs]
    with running_ehr(folder / f"alone-{workers}") as other:
        load_sample(other, visits=visits, seed=3, problem_rate=0.1)
        return replay(base, other.base_url, threads), sum(len(t) for t in threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="theracharge-bench-"))
    pg = Path(tempfile.mkdtemp(prefix="theracharge-bench-pg-"))  # its own: postgres enters it
    try:
        with running_postgres(pg) as database, running_redis(folder / "redis") as redis:
            for workers in args.workers:
                ours = on_workers(workers, args.visits, folder, database, redis.url)
                alone, requests_sent = ehr_alone(workers, args.visits, folder)
                rows.append((workers, requests_sent, ours, alone))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(pg, ignore_errors=True)
    print(
        f"backfill of {args.visits} sample visits (one billing day each), sekmet-fhir, "
        "PostgreSQL and Redis on 127.0.0.1 sharing the 2 cores"
    )
    print(
        f"{'workers':>8}{'requests':>10}{'ours s':>9}{'days/s':>8}{'EHR alone s':>13}{'ratio':>7}"
    )
    for workers, count, ours, alone in rows:
        print(
            f"{workers:>8}{count:>10}{ours:>9.2f}{args.visits / ours:>8.1f}{alone:>13.2f}"
            f"{ours / alone:>7.2f}"
        )


if __name__ == "__main__":
    main()
