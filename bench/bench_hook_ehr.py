"""Benchmark: a CDS hook call's latency when the EHR is slow, as production EHRs are.

Run: `.venv/bin/python bench/bench_hook_ehr.py [--visits 30] [--delay 0.15] [--mode preview]`
(needs the sandbox EHR: `make test` installs it into .ehr-venv).

1. starts sekmet-fhir behind a proxy on 127.0.0.1 that holds every request `--delay` seconds
   before forwarding it (a production EHR's 100–300 ms a round trip), the EHR naming the
   proxy as its base;
2. loads the sample's visits written the US Core way (`--shape`), every patient's coverage
   Medicare Part B unless `--as-drawn` (the costliest path: the episode rules read the
   patient's history);
3. for each visit, builds the prefetch the EHR would send (straight from sekmet, not timed),
   then calls the hook in process with a fresh ES384-signed JWT, THERACHARGE_FHIR_BASE_URL
   pointing at the proxy, and times the call and counts the requests it sent to the EHR. The
   first call (the CapabilityStatement read once per process) is not counted.

Prints the median, 90th percentile and largest latency, the EHR requests per call, and the
latency left once the proxy's delay per request is taken away. Asserts nothing. To compare
with an earlier build, run this script with `PYTHONPATH` pointing at that build's tree (a
`git worktree`): the figures of both come from the same EHR, data and delay.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after site-packages: a compiled install is measured as such

from tests.ehr import free_port, load_sample, running_ehr  # noqa: E402
from tests.reliability.faults import FaultProxy  # noqa: E402

ISSUER = "https://ehr.example.org"
KID = "bench-es384"
AUDIENCE = "http://localhost/cds-services/therapy-charges"


def jwks(folder: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": KID, "alg": "ES384", "use": "sig"})
    path = folder / "jwks.json"
    path.write_text(json.dumps({"keys": [public]}))
    return key, path


def token(key: ec.EllipticCurvePrivateKey) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    claims["jti"] = str(uuid.uuid4())
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": KID})


def medicare_for_all(base: str) -> None:
    """Every coverage's payer Medicare Part B: each day takes the episode rules' path."""
    coverages = requests.get(f"{base}/Coverage?_count=1000", timeout=30).json().get("entry", [])
    entries = []
    for entry in coverages:
        coverage = entry["resource"]
        coverage["payor"] = [{"reference": "Organization/payer-medicare-b"}]
        url = f"Coverage/{coverage['id']}"
        entries.append({"resource": coverage, "request": {"method": "PUT", "url": url}})
    answer = requests.post(
        base, json={"resourceType": "Bundle", "type": "transaction", "entry": entries}, timeout=60
    )
    answer.raise_for_status()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--delay", type=float, default=0.15, help="seconds added per request")
    parser.add_argument("--shape", default="us-core", choices=("us-core", "theracharge"))
    parser.add_argument("--mode", default="preview", choices=("preview", "direct"))
    parser.add_argument("--as-drawn", action="store_true", help="keep the sample's payers")
    args = parser.parse_args()

    from plugin.config.files import load_settings
    from plugin.gateway.client import FhirClient
    from plugin.pipeline.hooks import prefetch_from
    from plugin.web.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ehr_port = free_port()
        proxy = FaultProxy(f"http://127.0.0.1:{ehr_port}", free_port())
        proxy.add("GET", ".", "slow", times=10**9, seconds=args.delay)
        proxy.add("POST", ".", "slow", times=10**9, seconds=args.delay)
        proxy.add("PUT", ".", "slow", times=10**9, seconds=args.delay)
        server = proxy.start()
        try:
            with running_ehr(folder / "ehr", port=ehr_port, advertised=f"{proxy.url}/fhir") as ehr:
                load_sample(ehr, visits=args.visits, seed=args.seed, shape=args.shape)
                if not args.as_drawn:
                    medicare_for_all(ehr.direct_url)
                direct = FhirClient(ehr.direct_url)
                encounters = sorted(
                    e["resource"]["id"]
                    for e in requests.get(
                        f"{ehr.direct_url}/Encounter?_count=1000&_elements=id", timeout=30
                    ).json()["entry"]
                )
                key, jwks_path = jwks(folder)
                app = create_app(
                    load_settings(
                        {
                            "THERACHARGE_INSTANCE_DIR": str(folder / "instance"),
                            "THERACHARGE_FHIR_BASE_URL": f"{proxy.url}/fhir",
                            "THERACHARGE_CDS_ISSUERS": ISSUER,
                            "THERACHARGE_CDS_JWKS": str(jwks_path),
                            "THERACHARGE_PUBLIC_URL": "http://localhost",
                            "THERACHARGE_WRITE_MODE": args.mode,
                            "THERACHARGE_HOOK_BUDGET_SECONDS": "30",
                        }
                    ),
                    start_worker=False,
                )
                state = app.extensions["theracharge"]
                client = app.test_client()
                latencies: list[float] = []
                sent: list[int] = []
                for number, encounter in enumerate(encounters):
                    resource = direct.read(f"Encounter/{encounter}")
                    body: dict[str, Any] = {
                        "hook": "encounter-discharge",
                        "hookInstance": str(uuid.uuid4()),
                        "fhirServer": f"{proxy.url}/fhir",
                        "context": {
                            "userId": "PractitionerRole/bench",
                            "patientId": resource["subject"]["reference"].split("/", 1)[1],
                            "encounterId": encounter,
                        },
                        "prefetch": prefetch_from(direct, encounter),
                    }
                    headers = {"Authorization": f"Bearer {token(key)}"}
                    before = state.gatherer().client.requests_sent
                    started = time.perf_counter()
                    answer = client.post(
                        "/cds-services/therapy-charges", json=body, headers=headers
                    )
                    took = time.perf_counter() - started
                    if answer.status_code != 200:
                        raise SystemExit(f"{encounter}: HTTP {answer.status_code} {answer.json}")
                    if number == 0:
                        continue  # the CapabilityStatement, read once per process
                    latencies.append(took)
                    sent.append(state.gatherer().client.requests_sent - before)
        finally:
            server.shutdown()

    ms = [t * 1000 for t in latencies]
    own = [t - n * args.delay * 1000 for t, n in zip(ms, sent, strict=True)]
    print(
        f"{len(ms)} hook calls ({args.shape}, {'as drawn' if args.as_drawn else 'Medicare'}, "
        f"{args.mode}), {args.delay * 1000:.0f} ms added per EHR request"
    )
    print(
        f"latency ms: median {statistics.median(ms):.0f}, p90 {percentile(ms, 0.9):.0f}, "
        f"max {max(ms):.0f}"
    )
    counts = {n: sent.count(n) for n in sorted(set(sent))}
    print(
        f"EHR requests per call: mean {statistics.mean(sent):.2f}; "
        + ", ".join(f"{n} requests: {c} calls" for n, c in counts.items())
    )
    print(f"latency less the added delay, ms: median {statistics.median(own):.0f}")


if __name__ == "__main__":
    main()
