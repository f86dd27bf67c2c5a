"""Benchmark: offline processing of sample visits from NDJSON, next to a plain orjson parse.

Run: `.venv/bin/python bench/bench_process.py [--visits 10000 100000]`. For each size it writes
a sample NDJSON file, then measures in fresh processes pinned to one core: (1) parsing every line
with orjson and nothing else, (2) `theracharge process` end to end (translate, decide, render,
write the transaction Bundle and the report). Prints visits/s, seconds per 100k resources and
peak RSS. Asserts nothing. Targets (issue 3): ≥ 2,000 visits/s on one core, within about 10× of
the plain parse, peak RSS under 1 GiB at 100,000 visits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import os, resource, sys, time, json
mode, path, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
if jobs == 1:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
setup = time.perf_counter()
if mode == "process":
    from datetime import datetime
    from plugin.pipeline.files import OfflineOutputs, process_file
    from plugin.config.files import load_settings
    settings = load_settings()
start = time.perf_counter()
setup = start - setup
if mode == "parse":
    import orjson
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            orjson.loads(line)
            count += 1
else:
    now = datetime.now().astimezone()
    with open(os.devnull, "wb") as bundle, open(os.devnull, "wb") as report:
        summary = process_file(path, settings, OfflineOutputs(bundle, report), now, jobs=jobs)
    count = summary.visits
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "count": count, "peak_mb": peak, "child_mb": child,
                  "setup": setup}))
"""


def measure(mode: str, path: Path, jobs: int = 1) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(jobs)],
        capture_output=True,
        text=True,
        check=True,
        cwd=path.parent,  # not the checkout: a compiled install is measured as such
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--jobs", type=int, nargs="+", default=[1, 2], help="processes (1 is pinned to a core)"
    )
    args = parser.parse_args()
    theracharge = Path(sys.executable).with_name("theracharge")
    with tempfile.TemporaryDirectory() as folder:
        for visits in args.visits:
            path = Path(folder) / f"visits-{visits}.ndjson"
            subprocess.run(
                [
                    str(theracharge),
                    "sample",
                    "--visits",
                    str(visits),
                    "--seed",
                    "7",
                    "--days",
                    "20",
                    "--out",
                    str(path),
                ],
                check=True,
            )
            resources = sum(1 for _ in path.open("rb"))
            size = os.path.getsize(path) / 1e6
            parse = measure("parse", path)
            per_100k = 100_000 / resources
            print(f"\n{visits:,} visits: {resources:,} resources, {size:,.0f} MB NDJSON")
            print(
                f"  {'orjson parse only (one core)':<32} {parse['seconds']:7.2f} s "
                f"({parse['seconds'] * per_100k:5.2f} s per 100k resources), "
                f"peak RSS {parse['peak_mb']:5.0f} MB"
            )
            for jobs in args.jobs:
                got = measure("process", path, jobs)
                rate = got["count"] / got["seconds"]
                memory = f"peak RSS {got['peak_mb']:5.0f} MB"
                if jobs > 1:  # a forked process shares the parent's pages until it writes them
                    memory += f" (+ largest part {got['child_mb']:.0f} MB)"
                label = f"process --jobs {jobs}"
                print(
                    f"  {label:<32} {got['seconds']:7.2f} s "
                    f"({got['seconds'] * per_100k:5.2f} s per 100k resources), {memory}: "
                    f"{rate:,.0f} visits/s, {got['seconds'] / parse['seconds']:.1f}× the parse"
                )
            print("  start-up (imports, settings) not counted")
            time.sleep(0.5)


if __name__ == "__main__":
    main()
