"""A soak of mixed traffic against the whole layout, with CDS client JWTs on.

    .venv/bin/python -m tests.reliability.soak --minutes 10

Starts the sandbox EHR (behind the fault proxy, with no faults), and TheraCharge under
gunicorn (2 sync workers, direct writes), then for the given time sends, from 8 threads:
signed hook calls for 40 distinct visits (each with a fresh JWT), Subscription notifications,
charges API previews, worklist pages, readiness checks and metrics scrapes. Prints the count
and p50/p99 latency per kind, every 5xx, and the workers' memory (RSS) after warm-up and at the
end. Exits 1 on any 5xx, or when the workers' memory at the end is more than 10 % over its
value after warm-up (the first tenth of the run). Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric import ec

from plugin.gateway.client import FhirClient
from plugin.pipeline.hooks import prefetch_from
from tests.reliability.conftest import ADMIN, BILLING, SECRET, VISITS, Stack, stack_running

THREADS = 8
RSS_GROWTH_LIMIT = 0.10


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)  # every 5xx or failed request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float, status: int | None, detail: str = "") -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            if status is None or status >= 500:
                self.errors.append(f"{kind}: {status} {detail[:200]}")


def rss_kib(stack: Stack) -> int:
    """The gunicorn workers' resident memory, added up (KiB)."""
    total = 0
    for pid in stack.service.workers():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
        )
    return total


def _requests(stack: Stack) -> list[tuple[str, Any]]:
    """One of each kind of request; `kind` names it in the report."""
    encounters = [f"enc-{n:04d}" for n in range(1, VISITS + 1)]
    prefetches = {e: prefetch_from(FhirClient(stack.ehr.direct_url), e) for e in encounters}
    resources = {e: p["encounter"] for e, p in prefetches.items()}

    def hook(session: requests.Session) -> requests.Response:
        encounter = random.choice(encounters)
        return stack.hook(encounter, prefetches[encounter], timeout=60)

    def notification(session: requests.Session) -> requests.Response:
        encounter = random.choice(encounters)
        return session.put(
            f"{stack.service.url}/notifications/fhir/Encounter/{encounter}",
            json=resources[encounter],
            headers={"X-TheraCharge-Secret": SECRET},
            timeout=30,
        )

    def preview(session: requests.Session) -> requests.Response:
        encounter = random.choice(encounters)
        return session.get(
            f"{stack.service.url}/api/v1/encounters/{encounter}/charges",
            headers=BILLING,
            timeout=60,
        )

    def get(path: str, headers: dict[str, str] | None = None) -> Any:
        return lambda session: session.get(
            f"{stack.service.url}{path}", headers=headers or {}, timeout=30
        )

    return [
        ("hook", hook),
        ("hook", hook),
        ("hook", hook),
        ("hook", hook),
        ("notification", notification),
        ("charges-preview", preview),
        ("notifications-admin", get("/admin/api/v1/notifications?status=failed", ADMIN)),
        ("readyz", get("/readyz")),
        ("metrics", get("/metrics")),
    ]


def soak(seconds: float, folder: Path, check_memory: bool = True) -> int:
    """Run the soak; print the report; 0 when it held, 1 when it did not."""
    with stack_running(folder, ec.generate_private_key(ec.SECP384R1())) as stack:
        kinds = _requests(stack)
        tally = Tally()
        started = time.monotonic()
        deadline = started + seconds
        warm = {"rss": 0}

        def run() -> None:
            session = requests.Session()
            while time.monotonic() < deadline:
                kind, send = random.choice(kinds)
                begun = time.perf_counter()
                try:
                    answer = send(session)
                    status, detail = answer.status_code, answer.text
                except Exception as exc:  # noqa: BLE001 -- no answer, or the load itself broke
                    status, detail = None, f"{type(exc).__name__}: {exc}"
                tally.add(kind, time.perf_counter() - begun, status, detail)

        threads = [threading.Thread(target=run, daemon=True) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(seconds / 10)
        warm["rss"] = rss_kib(stack)
        for thread in threads:
            thread.join(seconds + 120)
        final = rss_kib(stack)
        return _report(tally, seconds, warm["rss"], final, check_memory)


def _report(tally: Tally, seconds: float, warm: int, final: int, check_memory: bool) -> int:
    total = sum(len(v) for v in tally.latencies.values())
    print(f"soak: {seconds:.0f} s, {THREADS} threads, {total} requests ({total / seconds:.0f}/s)")
    everything: list[float] = []
    for kind, values in sorted(tally.latencies.items()):
        everything += values
        print(f"  {kind:<20} {len(values):>6}  p50 {_ms(values, 50):>7}  p99 {_ms(values, 99):>7}")
    p50, p99 = _ms(everything, 50), _ms(everything, 99)
    print(f"  {'all':<20} {len(everything):>6}  p50 {p50:>7}  p99 {p99:>7}")
    print(f"server errors (5xx or no answer): {len(tally.errors)}")
    for error in tally.errors[:20]:
        print(f"  {error}")
    growth = (final - warm) / warm if warm else 0.0
    after, end = f"{warm / 1024:.1f} MiB", f"{final / 1024:.1f} MiB"
    print(f"workers' RSS: {after} after warm-up, {end} at the end ({growth:+.1%})")
    failed = bool(tally.errors) or (check_memory and growth > RSS_GROWTH_LIMIT)
    print("soak: FAILED" if failed else "soak: held")
    return 1 if failed else 0


def _ms(values: list[float], percent: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0] * 1000:.1f} ms"
    return f"{statistics.quantiles(values, n=100)[percent - 1] * 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="theracharge-soak-") as folder:
        return soak(args.minutes * 60, Path(folder))


if __name__ == "__main__":
    sys.exit(main())
