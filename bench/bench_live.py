"""Benchmark: `process --since` against the sandbox EHR, next to the EHR alone answering the same
requests, and against a zero-cost stub EHR.

Run: `.venv/bin/python bench/bench_live.py [--visits 300] [--concurrency 1 2 4]` (needs the
sandbox EHR: `make test` installs it into .ehr-venv). For each concurrency:
1. loads a fresh sekmet-fhir with the sample's visits and runs `theracharge process --since`
   in this process, recording every request it sends (method, URL, body, which thread) and
   every answer;
2. loads a second fresh server alike and replays exactly those requests, thread by thread with
   the same concurrency and nothing else in between: what the EHR alone needs for them;
3. runs `process --since` again against a stub that answers each recorded request with its
   recorded answer at no cost (no network), the median of five runs: how fast we go when the
   EHR is not the limit. Each day is one run of the day-run service (its lock, its ledger
   row in the run's SQLite database), `--jobs` = the concurrency days at a time.
Prints the wall times, their ratio (goal ≤ 1.1×) and encounters/s against the stub (goal
≥ 1,000/s). Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after site-packages: a compiled install is measured as such

from tests.ehr import load_sample, running_ehr  # noqa: E402

SINCE = "2026-11-01"
Recorded = tuple[str, str, bytes | None, int, bytes]  # method, URL, body, status, answer


@contextlib.contextmanager
def recording() -> Iterator[dict[int, list[Recorded]]]:
    """Every request sent through requests, by thread, with its answer."""
    by_thread: dict[int, list[Recorded]] = defaultdict(list)
    original = requests.Session.send

    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        response = original(self, request, **kwargs)
        body = request.body.encode() if isinstance(request.body, str) else request.body
        by_thread[threading.get_ident()].append(
            (request.method, request.url, body, response.status_code, response.content)
        )
        return response

    requests.Session.send = send  # type: ignore[method-assign]
    try:
        yield by_thread
    finally:
        requests.Session.send = original  # type: ignore[method-assign]


@contextlib.contextmanager
def stubbed(answers: dict[tuple[str, str], tuple[int, bytes]]) -> Iterator[None]:
    """Requests answered from `answers` by method and URL, without a network."""

    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        status, content = answers.get((request.method, request.url), (404, b"{}"))
        response = requests.Response()
        response.status_code, response._content = status, content
        response.headers["Content-Type"] = "application/fhir+json"
        response.url, response.request = request.url, request
        return response

    original = requests.Session.send
    requests.Session.send = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        requests.Session.send = original  # type: ignore[method-assign]


STUB_RUNS = 5


def process(base_url: str, concurrency: int, database: Path) -> float:
    from plugin.commands import main as cli

    os.environ.update(
        {
            "THERACHARGE_FHIR_BASE_URL": base_url,
            "THERACHARGE_FHIR_CONCURRENCY": str(concurrency),
            "THERACHARGE_DATABASE_URL": f"sqlite:///{database}",
        }
    )
    started = time.perf_counter()
    with contextlib.redirect_stderr(open(os.devnull, "w")):
        code = cli.main(["process", "--since", SINCE, "--jobs", str(concurrency)])
    if code != 0:
        raise RuntimeError(f"process --since exited {code}")
    return time.perf_counter() - started


def replay(base_from: str, base_to: str, threads: list[list[Recorded]]) -> float:
    """The recorded requests sent again to another server, each thread's in its order."""

    def one(requests_of: list[Recorded]) -> None:
        with requests.Session() as session:
            for method, url, body, _, _ in requests_of:
                session.request(
                    method,
                    url.replace(base_from, base_to),
                    data=body,
                    headers={"Content-Type": "application/fhir+json", "Prefer": "handling=strict"},
                    timeout=60,
                )

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, len(threads))) as pool:
        list(pool.map(one, threads))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for concurrency in args.concurrency:
            with running_ehr(folder / f"a{concurrency}") as ehr:
                load_sample(ehr, visits=args.visits, seed=3, problem_rate=0.1)
                with recording() as by_thread:
                    ours = process(ehr.base_url, concurrency, folder / f"a{concurrency}.db")
                recorded = [r for rs in by_thread.values() for r in rs]
                answers = {(m, u): (s, c) for m, u, _, s, c in recorded}
                threads = [rs for rs in by_thread.values() if rs]
                base = ehr.base_url
            with running_ehr(folder / f"b{concurrency}") as other:
                load_sample(other, visits=args.visits, seed=3, problem_rate=0.1)
                alone = replay(base, other.base_url, threads)
            with stubbed(answers):  # the median of STUB_RUNS runs: a run is half a second
                stub = statistics.median(
                    process(base, concurrency, folder / f"c{concurrency}-{n}.db")
                    for n in range(STUB_RUNS)
                )
            rows.append((concurrency, len(recorded), ours, alone, stub))
    print(
        f"process --since over {args.visits} sample visits (one billing day each), sekmet-fhir "
        "on 127.0.0.1 sharing the 2 cores"
    )
    print(
        f"{'concurrency':>11}{'requests':>10}{'ours s':>9}{'EHR alone s':>13}{'ratio':>7}"
        f"{'stub s':>8}{'enc/s on stub':>15}"
    )
    for concurrency, count, ours, alone, stub in rows:
        print(
            f"{concurrency:>11}{count:>10}{ours:>9.2f}{alone:>13.2f}{ours / alone:>7.2f}"
            f"{stub:>8.2f}{args.visits / stub:>15,.0f}"
        )
    print("goals: ours / EHR alone ≤ 1.1; ≥ 1,000 encounters/s on the stub")


if __name__ == "__main__":
    main()
