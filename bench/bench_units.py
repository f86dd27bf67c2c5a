"""Benchmark: visits decided per second by the pure unit core, next to parsing the visit's JSON.

Run: `make bench` (or `.venv/bin/python bench/bench_units.py [--seconds N]`). Prints figures; it
asserts nothing. Goal (issue 19): at least 50,000 visits/s on one core for a typical visit.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Callable
from datetime import date

import orjson

from plugin.config.files import load_settings
from plugin.rules.model import Method, Service
from plugin.rules.units import decide_units
from plugin.schemas.units_request import parse_units_request

# A typical PT visit: an evaluation, four timed procedures and unattended e-stim.
ON = date(2026, 11, 2)  # the date of service the rules are taken for
VISIT = {
    "method": "cms",
    "services": [
        {"code": "97161", "minutes": 30},
        {"code": "97110", "minutes": 23},
        {"code": "97112", "minutes": 14},
        {"code": "97140", "minutes": 10},
        {"code": "97530", "minutes": 8},
        {"code": "G0283", "minutes": 15},
    ],
}


def rate(label: str, work: Callable[[], object], seconds: float) -> float:
    """Calls per second of `work`, measured over about `seconds` after a warm-up."""
    for _ in range(200):
        work()
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(500):
            work()
        calls += 500
    elapsed = time.perf_counter() - start
    per_second = calls / elapsed
    print(f"{label:<52} {per_second:>12,.0f} /s  {1e6 / per_second:>8.1f} µs each")
    return per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    settings = load_settings()
    catalog, parameters = settings.catalog, settings.unit_parameters
    raw = orjson.dumps(VISIT)
    services = [Service(s["code"], s["minutes"]) for s in VISIT["services"]]  # type: ignore[index]
    gc.collect()
    gc.freeze()
    print(f"typical visit: {len(services)} services, {len(raw)} bytes of JSON, one core")
    decided = rate(
        "decide (pure core, CMS)",
        lambda: decide_units(services, catalog, parameters, on=ON),
        args.seconds,
    )
    rate(
        "decide (pure core, AMA)",
        lambda: decide_units(services, catalog, parameters, on=ON, method=Method.AMA),
        args.seconds,
    )
    parsed = rate("orjson.loads of the visit JSON", lambda: orjson.loads(raw), args.seconds)
    rate("json.loads of the visit JSON", lambda: json.loads(raw), args.seconds)
    rate(
        "validate request (marshmallow schema + catalog)",
        lambda: parse_units_request(orjson.loads(raw), catalog),
        args.seconds,
    )
    print(f"decide costs {parsed / decided:.1f}× an orjson parse of the same visit")
    verdict = "meets" if decided >= 50_000 else "misses"
    print(f"goal (issue 19) 50,000 visits/s on one core: {verdict} ({decided:,.0f}/s)")


if __name__ == "__main__":
    main()
