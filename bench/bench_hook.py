"""Benchmark: the CDS hook as EHRs call it, under gunicorn, next to a hello-world Flask endpoint.

Run: `.venv/bin/python bench/bench_hook.py [--seconds 15] [--connections 16] [--visits 500]`
(needs `wrk`: `apt-get install wrk`). Starts TheraCharge (`theracharge serve`, 2 sync workers,
preview mode) twice — with CDS client authentication on, and off — and a hello-world app under
the same gunicorn settings on 127.0.0.1, drives each with wrk for a bounded time, and prints
requests/s, p50 and p99 latency and the ratios to hello-world measured in the same run.

Signed is the default and what EHRs do: every call carries its own JWT (RS384 and ES384 each
measured), with a fresh `jti`, signed before the run and handed out one per request by the wrk
script, so each is verified and recorded once. Calls cycle through `--visits` distinct visits
(their own encounter, patient and procedure ids and minutes): no cache keyed on a body could
help. Also drives the hello-world app's `POST /echo` with a hook body (parse it, answer no
cards): the floor any hook implementation stands on, transport and JSON alone. Asserts nothing.
Goals (issue 19): signed ≥ 0.30 of hello-world with p99 ≤ 3× hello's; unsigned ≥ 0.35.
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
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after site-packages: a compiled install is measured as such

from tests import builders  # noqa: E402
from tests.helpers.hooks import prefetch_of  # noqa: E402

# One request per call from a list: each wrk thread takes every n-th line, so no two calls
# share a token; bodies cycle. {tokens}: one "Bearer …" per line, or an empty file (unsigned).
WRK_SCRIPT = """
local counter = 0
local threads = {{}}
setup = function(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
init = function(args)
  bodies, tokens = {{}}, {{}}
  for line in io.lines("{bodies}") do table.insert(bodies, line) end
  for line in io.lines("{tokens}") do table.insert(tokens, line) end
  step = {threads}
  i = id + 1
end
request = function()
  local headers = {{["Content-Type"] = "application/json"}}
  if #tokens > 0 then headers["Authorization"] = tokens[((i - 1) % #tokens) + 1] end
  local body = bodies[((i - 1) % #bodies) + 1]
  i = i + step
  return wrk.format("POST", nil, headers, body)
end
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
THREADS = 2
ISSUER = "https://ehr.bench.example"


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


def hook_body(number: int = 0) -> dict[str, object]:
    """A Medicare PT visit with six procedures; `number` makes it a visit of its own (its own
    encounter, patient and procedure ids, and minutes that vary)."""
    shift = number % 7
    procedures = [
        builders.procedure("p1", "97110", "2026-11-02T09:00:00-05:00", 23 + shift),
        builders.procedure("p2", "97112", "2026-11-02T09:31:00-05:00", 14),
        builders.procedure("p3", "97140", "2026-11-02T09:46:00-05:00", 10 - shift % 3),
        builders.procedure("p4", "97530", "2026-11-02T09:58:00-05:00", 8 + shift),
        builders.procedure("p5", "97161", "2026-11-02T08:20:00-05:00", 30),
        builders.procedure(
            "p6",
            "G0283",
            "2026-11-02T10:15:00-05:00",
            15,
            system="https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        ),
    ]
    text = json.dumps(builders.complete_record(*procedures))
    for old, new in (
        ('"Patient/p1"', f'"Patient/p{number}"'),
        ('"Encounter/e1"', f'"Encounter/e{number}"'),
        ('"id": "e1"', f'"id": "e{number}"'),
    ):
        text = text.replace(old, new)
    for index in range(1, 7):
        text = text.replace(f'"p{index}"', f'"v{number}p{index}"')
        text = text.replace(f'"Procedure/p{index}"', f'"Procedure/v{number}p{index}"')
    return {
        "hook": "encounter-discharge",
        "hookInstance": f"bench-{number:05d}",
        "context": {
            "userId": "PractitionerRole/pt1",
            "patientId": f"p{number}",
            "encounterId": f"e{number}",
        },
        "prefetch": prefetch_of(json.loads(text)),
    }


def keys(folder: Path) -> tuple[dict[str, Any], Path]:
    """An RS384 and an ES384 signing key of the EHR, and the JWKS file that publishes both."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    published = []
    for kid, algorithm, key, family in (
        ("rs", "RS384", rsa_key, jwt.algorithms.RSAAlgorithm),
        ("es", "ES384", ec_key, jwt.algorithms.ECAlgorithm),
    ):
        public = json.loads(family.to_jwk(key.public_key()))
        public.update({"kid": kid, "alg": algorithm, "use": "sig"})
        published.append(public)
    path = folder / "jwks.json"
    path.write_text(json.dumps({"keys": published}))
    return {"RS384": ("rs", rsa_key), "ES384": ("es", ec_key)}, path


def tokens(path: Path, count: int, algorithm: str, signing: dict[str, Any], audience: str) -> float:
    """`count` fresh tokens, one per line; returns the microseconds each took to sign."""
    kid, key = signing[algorithm]
    started = time.perf_counter()
    now = int(time.time())
    with path.open("w") as out:
        for _ in range(count):
            claims = {
                "iss": ISSUER,
                "aud": audience,
                "iat": now,
                "exp": now + 290,
                "jti": str(uuid.uuid4()),
            }
            token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})
            out.write(f"Bearer {token}\n")
    return (time.perf_counter() - started) / count * 1e6


def run_wrk(
    url: str, script: str, seconds: int, connections: int
) -> tuple[float, float, float, int]:
    done = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s", "-s", script, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    match = re.search(r"RESULT (\S+) (\S+) (\S+) (\d+)", done.stdout)
    if not match:
        raise RuntimeError(done.stdout + done.stderr)
    return float(match[1]), float(match[2]), float(match[3]), int(match[4])


def serve(bin_dir: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(bin_dir / "theracharge"), "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--visits", type=int, default=500, help="distinct visits the calls cycle")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        bodies = folder / "bodies.txt"
        bodies.write_text("".join(json.dumps(hook_body(n)) + "\n" for n in range(args.visits)))
        first_body = bodies.read_text().split("\n", 1)[0].encode()
        no_tokens = folder / "none.txt"
        no_tokens.write_text("")
        signing, jwks = keys(folder)

        def script(token_file: Path) -> str:
            path = folder / f"{token_file.stem}.lua"
            path.write_text(WRK_SCRIPT.format(bodies=bodies, tokens=token_file, threads=THREADS))
            return str(path)

        get_script = folder / "get.lua"
        get_script.write_text(GET_SCRIPT)
        signed_port, open_port, hello_port = free_port(), free_port(), free_port()
        base_env = {
            **os.environ,
            "THERACHARGE_WRITE_MODE": "preview",
        }
        processes = [
            serve(
                bin_dir,
                signed_port,
                {
                    **base_env,
                    "THERACHARGE_INSTANCE_DIR": str(folder / "signed"),
                    "THERACHARGE_CDS_ISSUERS": ISSUER,
                    "THERACHARGE_CDS_JWKS": str(jwks),
                    "THERACHARGE_PUBLIC_URL": f"http://127.0.0.1:{signed_port}",
                },
            ),
            serve(
                bin_dir,
                open_port,
                {
                    **base_env,
                    "THERACHARGE_INSTANCE_DIR": str(folder / "open"),
                    "THERACHARGE_CDS_AUTH": "disabled",
                },
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
        path = "/cds-services/therapy-charges"
        results: dict[str, tuple[float, float, float, int]] = {}
        signing_cost: dict[str, float] = {}
        try:
            wait_for(f"http://127.0.0.1:{open_port}{path}", first_body)
            wait_for(f"http://127.0.0.1:{signed_port}/cds-services")
            wait_for(f"http://127.0.0.1:{hello_port}/hello")
            hello_url = f"http://127.0.0.1:{hello_port}"
            results["GET /hello (hello world)"] = run_wrk(
                f"{hello_url}/hello", str(get_script), args.seconds, args.connections
            )
            results["POST /echo, a hook body, no work"] = run_wrk(
                f"{hello_url}/echo", script(no_tokens), args.seconds, args.connections
            )
            unsigned = run_wrk(
                f"http://127.0.0.1:{open_port}{path}",
                script(no_tokens),
                args.seconds,
                args.connections,
            )
            results["POST hook, unsigned"] = unsigned
            # enough fresh tokens for the run at the unsigned rate, and a margin
            count = int(unsigned[0] * args.seconds * 1.3) + 1000
            for algorithm in ("RS384", "ES384"):
                token_file = folder / f"tokens-{algorithm}.txt"
                audience = f"http://127.0.0.1:{signed_port}{path}"
                signing_cost[algorithm] = tokens(token_file, count, algorithm, signing, audience)
                results[f"POST hook, signed {algorithm} (fresh jti)"] = run_wrk(
                    audience, script(token_file), args.seconds, args.connections
                )
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
    print(
        f"gunicorn, 2 sync workers, wrk -t{THREADS} -c{args.connections} -d{args.seconds}s "
        f"on 127.0.0.1 (2 cores shared); hook calls cycle {args.visits} distinct visits "
        "(6 procedures each), preview mode"
    )
    print(f"{'endpoint':<40}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}")
    for label, (rate, p50, p99, errors) in results.items():
        print(f"{label:<40}{rate:>10,.0f}{p50:>10.1f}{p99:>10.1f}{errors:>9}")
    hello = results["GET /hello (hello world)"]
    echo = results["POST /echo, a hook body, no work"]
    print(f"echo / hello-world rate: {echo[0] / hello[0]:.2f} (the floor: receiving the body)")
    print(f"unsigned hook / hello-world rate: {unsigned[0] / hello[0]:.2f} (goal ≥ 0.35)")
    for algorithm in ("RS384", "ES384"):
        rate, _, p99, _ = results[f"POST hook, signed {algorithm} (fresh jti)"]
        print(
            f"signed {algorithm} hook / hello-world rate: {rate / hello[0]:.2f} (goal ≥ 0.30); "
            f"p99 {p99:.1f} ms = {p99 / hello[2]:.1f}× hello's (goal ≤ 3×); "
            f"signing a token took {signing_cost[algorithm]:.0f} µs here (the EHR's side)"
        )


if __name__ == "__main__":
    main()
