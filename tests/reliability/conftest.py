"""The whole layout for the reliability scenarios: the sandbox EHR behind a fault-injecting
proxy, and TheraCharge under gunicorn (2 sync workers, direct writes) talking to the proxy."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from plugin.config.files import Settings, load_settings
from plugin.config.tokens import token_hash
from plugin.gateway.client import FhirClient, iter_resources
from plugin.gateway.factory import connect
from plugin.pipeline.hooks import prefetch_from
from tests.ehr import Ehr, free_port, load_sample, running_ehr
from tests.reliability.faults import FaultProxy
from tests.service import Service, running_service

ISSUER = "https://ehr.example.org"
KID = "reliability-1"
SECRET = "notify-me"
BILLING = {"Authorization": "Bearer billing-token"}
ADMIN = {"Authorization": "Bearer admin-token"}
TOKENS = f"ann:admin=sha256:{token_hash('admin-token')},bill=sha256:{token_hash('billing-token')}"
VISITS = 40  # enc-0001 … enc-0040: each scenario takes encounters of its own


@dataclass
class Stack:
    ehr: Ehr
    proxy: FaultProxy
    service: Service
    settings: Settings  # as the service sees them (for our ChargeItem identifiers)
    sign: Callable[[str], str]  # a fresh CDS client JWT for a URL

    def charges(self, encounter: str, timeout: float = 90) -> requests.Response:
        return requests.post(
            f"{self.service.url}/api/v1/encounters/{encounter}/charges",
            headers=BILLING,
            timeout=timeout,
        )

    def hook(
        self, encounter: str, prefetch: dict[str, Any] | None = None, timeout: float = 120
    ) -> requests.Response:
        """A signed encounter-discharge call (a fresh JWT) with the EHR's prefetch for our
        templates, naming the proxy as fhirServer."""
        url = f"{self.service.url}/cds-services/therapy-charges"
        prefetch = prefetch or prefetch_from(FhirClient(self.ehr.direct_url), encounter)
        body = {
            "hook": "encounter-discharge",
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": f"{self.proxy.url}/fhir",
            "context": {
                "userId": "PractitionerRole/x",
                "patientId": prefetch["encounter"]["subject"]["reference"].split("/")[1],
                "encounterId": encounter,
            },
            "prefetch": prefetch,
        }
        headers = {"Authorization": f"Bearer {self.sign(url)}"}
        return requests.post(url, json=body, headers=headers, timeout=timeout)

    def ours(self, encounter: str | None = None) -> dict[str, dict[str, Any]]:
        """Our ChargeItems on the EHR by line key (two for one key fails the test), read with
        the service's own credentials (a SMART-guarded EHR answers nothing without)."""
        system = f"{self.settings.extension_base}/NamingSystem/charge-line"
        found: dict[str, dict[str, Any]] = {}
        page = connect(self.settings.fhir).search("ChargeItem?_count=200")
        for item in iter_resources(page.entries):
            for ident in item.get("identifier", []):
                if ident.get("system") == system:
                    assert ident["value"] not in found, f"two ChargeItems for {ident['value']}"
                    found[ident["value"]] = item
        if encounter is None:
            return found
        # The sample gives each visit its own patient (enc-0007 is pat-0007's only visit), so
        # an encounter's lines are its patient's day lines.
        day = f"Patient/{encounter.replace('enc-', 'pat-', 1)}/"
        return {k: v for k, v in found.items() if k.startswith(day)}

    def converged(self, encounter: str) -> dict[str, Any]:
        """A clean run now writes nothing, and the EHR holds exactly one ChargeItem per line."""
        again = self.charges(encounter)
        assert again.status_code == 200, again.text
        written = again.json()["written"]
        assert (written["created"], written["updated"], written["entered_in_error"]) == (
            [],
            [],
            [],
        ), written
        lines = {ln["key"] for ln in again.json()["lines"]}
        assert set(self.ours(encounter)) == lines
        return again.json()


@pytest.fixture(scope="module")
def cds_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@contextmanager
def stack_running(
    folder: Path,
    key: ec.EllipticCurvePrivateKey,
    workers: int = 2,
    server_auth: dict[str, Any] | None = None,
    **env: str,
) -> Iterator[Stack]:
    """The EHR (with `server_auth`; sample visits loaded when it needs no token), the proxy in
    front of it, and the service with `env` over the defaults below."""
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": KID, "alg": "ES384", "use": "sig"})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jwks.json").write_text(json.dumps({"keys": [public]}))
    ehr_port = free_port()
    proxy = FaultProxy(f"http://127.0.0.1:{ehr_port}", free_port())
    server = proxy.start()
    settings_env = {
        "THERACHARGE_FHIR_BASE_URL": f"{proxy.url}/fhir",
        "THERACHARGE_WRITE_MODE": "direct",
        "THERACHARGE_API_TOKENS": TOKENS,
        "THERACHARGE_NOTIFICATION_SECRET": SECRET,
        "THERACHARGE_CDS_ISSUERS": ISSUER,
        "THERACHARGE_CDS_JWKS": str(folder / "jwks.json"),
        "THERACHARGE_FHIR_READ_TIMEOUT": "2",
        "THERACHARGE_FHIR_RETRY_SECONDS": "8",
        "THERACHARGE_NOTIFICATION_CLAIM_SECONDS": "6",
        # longer than the EHR retry budget above: the scenarios below see the EHR's own errors
        "THERACHARGE_HOOK_BUDGET_SECONDS": "20",
        **env,
    }
    try:
        with running_ehr(
            folder / "ehr",
            port=ehr_port,
            advertised=f"{proxy.url}/fhir",
            server_auth=server_auth,
        ) as ehr:
            if server_auth is None:
                load_sample(ehr, visits=VISITS, seed=31, problem_rate=0.0)
            with running_service(folder / "service", settings_env, workers) as service:

                def sign(url: str) -> str:
                    now = int(time.time())
                    claims = {
                        "iss": ISSUER,
                        "aud": url,
                        "iat": now,
                        "exp": now + 300,
                        "jti": str(uuid.uuid4()),
                    }
                    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": KID})

                yield Stack(ehr, proxy, service, load_settings(settings_env), sign)
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, cds_key: Any) -> Iterator[Stack]:
    with stack_running(tmp_path_factory.mktemp("stack"), cds_key) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").proxy.clear()
