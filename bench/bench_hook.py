"""Benchmark: the CDS hook under gunicorn, next to a hello-world Flask endpoint, with wrk.

Run: `.venv/bin/python bench/bench_hook.py [--seconds 15] [--connections 16]` (needs `wrk`:
`apt-get install wrk`). Starts TheraCharge (`theracharge serve`, 2 sync workers, preview mode)
and a hello-world app under the same gunicorn settings on 127.0.0.1, drives each with wrk for a
bounded time, prints requests/s, p50 and p99 latency and their ratio, and stops both by PID.
The hook call carries a full prefetch: one encounter, six procedures. CDS client
authentication is switched off for the run (wrk replays one body; a real client sends a fresh
JWT each call). Also drives the hello-world app's `POST /echo` with the same body (parse it,
answer no cards): the floor any hook implementation stands on, transport and JSON alone.
Asserts nothing. Goal (issue 6): at least half the hello-world rate, p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import builders  # noqa: E402
from tests.web.conftest import prefetch_of  # noqa: E402

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "r")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT %f %f %f %d\\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
"""
GET_SCRIPT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %f %f %f %d\\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, data: bytes | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(
                url, data=data, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def hook_body() -> dict[str, object]:
    procedures = [
        builders.procedure("p1", "97110", "2026-11-02T09:00:00-05:00", 23),
        builders.procedure("p2", "97112", "2026-11-02T09:25:00-05:00", 14),
        builders.procedure("p3", "97140", "2026-11-02T09:40:00-05:00", 10),
        builders.procedure("p4", "97530", "2026-11-02T09:52:00-05:00", 8),
        builders.procedure("p5", "97161", "2026-11-02T08:20:00-05:00", 30),
        builders.procedure(
            "p6",
            "G0283",
            "2026-11-02T10:05:00-05:00",
            15,
            system="https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        ),
    ]
    return {
        "hook": "encounter-discharge",
        "hookInstance": "bench-0001",
        "context": {"userId": "PractitionerRole/pt1", "patientId": "p1", "encounterId": "e1"},
        "prefetch": prefetch_of(builders.complete_record(*procedures)),
    }


def run_wrk(
    url: str, script: str, seconds: int, connections: int
) -> tuple[float, float, float, int]:
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    match = re.search(r"RESULT (\S+) (\S+) (\S+) (\d+)", done.stdout)
    if not match:
        raise RuntimeError(done.stdout + done.stderr)
    return float(match[1]), float(match[2]), float(match[3]), int(match[4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as folder:
        body_path = Path(folder) / "body.json"
        body_path.write_text(json.dumps(hook_body()))
        post_script = Path(folder) / "post.lua"
        post_script.write_text(WRK_SCRIPT.format(body=body_path))
        get_script = Path(folder) / "get.lua"
        get_script.write_text(GET_SCRIPT)
        env = {
            **os.environ,
            "THERACHARGE_CDS_AUTH": "disabled",
            "THERACHARGE_WRITE_MODE": "preview",
            "THERACHARGE_INSTANCE_DIR": folder,
        }
        tc_port, hello_port = free_port(), free_port()
        processes = [
            subprocess.Popen(
                [str(bin_dir / "theracharge"), "serve", "--port", str(tc_port), "--workers", "2"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            ),
            subprocess.Popen(
                [
                    str(bin_dir / "gunicorn"),
                    "-w",
                    "2",
                    "-k",
                    "sync",
                    "--preload",
                    "-b",
                    f"127.0.0.1:{hello_port}",
                    "bench.hello_app:app",
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            ),
        ]
        try:
            hook_url = f"http://127.0.0.1:{tc_port}/cds-services/therapy-charges"
            wait_for(hook_url, body_path.read_bytes())
            wait_for(f"http://127.0.0.1:{hello_port}/hello")
            hello = run_wrk(
                f"http://127.0.0.1:{hello_port}/hello",
                str(get_script),
                args.seconds,
                args.connections,
            )
            echo = run_wrk(
                f"http://127.0.0.1:{hello_port}/echo",
                str(post_script),
                args.seconds,
                args.connections,
            )
            hook = run_wrk(hook_url, str(post_script), args.seconds, args.connections)
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
    print(
        f"gunicorn, 2 sync workers, wrk -t2 -c{args.connections} -d{args.seconds}s "
        "on 127.0.0.1 (2 cores shared)"
    )
    print(f"{'endpoint':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}")
    for name, (rate, p50, p99, errors) in (
        ("GET /hello (hello world)", hello),
        ("POST /echo, same body, no work", echo),
        ("POST hook, 6 procedures, preview", hook),
    ):
        print(f"{name:<34}{rate:>10,.0f}{p50:>10.1f}{p99:>10.1f}{errors:>9}")
    print(f"echo / hello-world rate: {echo[0] / hello[0]:.2f} (receiving and parsing the body)")
    print(
        f"hook / hello-world rate: {hook[0] / hello[0]:.2f} (goal ≥ 0.5); "
        f"hook p99 {hook[2]:.1f} ms (goal < 50)"
    )


if __name__ == "__main__":
    main()
