"""The sandbox EHR for integration tests: sekmet-fhir on 127.0.0.1, a fresh database each time.

The test command (`make test`) installs sekmet-fhir into its own virtual environment
(.ehr-venv, pinned in ehr/requirements.txt) and names its executable in
THERACHARGE_TEST_SEKMET. Without it these tests fail and say why; they never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent


def sekmet_executable() -> str:
    given = os.environ.get("THERACHARGE_TEST_SEKMET") or str(ROOT / ".ehr-venv" / "bin" / "sekmet")
    if not Path(given).is_file():
        raise RuntimeError(
            f"sekmet-fhir not found at {given}: run the tests with `make test`, which installs "
            "it into .ehr-venv (or set THERACHARGE_TEST_SEKMET)"
        )
    return given


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Ehr:
    base_url: str
    process: subprocess.Popen[bytes]
    folder: Path
    direct_url: str = ""  # its own address, when base_url is a proxy in front of it

    def __post_init__(self) -> None:
        self.direct_url = self.direct_url or self.base_url

    def post(self, body: dict[str, Any]) -> Any:
        answer = requests.post(
            self.direct_url,
            json=body,
            headers={"Content-Type": "application/fhir+json"},
            timeout=60,
        )
        answer.raise_for_status()
        return answer.json()

    def search(self, query: str) -> list[dict[str, Any]]:
        """Every matching resource, over all pages (tests only; no auth)."""
        url: str | None = f"{self.direct_url}/{query}"
        found = []
        while url:
            bundle = requests.get(url, timeout=30).json()
            found += [
                e["resource"]
                for e in bundle.get("entry", [])
                if e.get("search", {}).get("mode", "match") == "match"
            ]
            url = next(
                (link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None
            )
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@contextmanager
def running_ehr(
    folder: Path,
    server_auth: dict[str, Any] | None = None,
    port: int | None = None,
    advertised: str | None = None,
) -> Iterator[Ehr]:
    """Start sekmet with a fresh database in `folder`; stop it (by PID) at the end.

    `advertised`: the base URL it names in its links and SMART configuration, when clients
    reach it through something else (the reliability tests' fault proxy)."""
    port = port or free_port()
    base = advertised or f"http://127.0.0.1:{port}/fhir"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "base_url": base,
        "host": "127.0.0.1",
        "port": port,
        "db_path": str(folder / "ehr.db"),
        "server_auth": server_auth or {"types": ["none"]},
        "validation": {"inbound": "strict"},
        "simulator": {"enabled": False},
        "log_inbound": False,
    }
    (folder / "settings.yaml").write_text(yaml.safe_dump(settings))
    log = (folder / "sekmet.log").open("wb")
    process = subprocess.Popen(
        [sekmet_executable(), "serve", "-c", str(folder / "settings.yaml")],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ehr = Ehr(base, process, folder, f"http://127.0.0.1:{port}/fhir")
    try:
        _wait_ready(ehr)
        yield ehr
    finally:
        ehr.stop()
        log.close()


def _wait_ready(ehr: Ehr) -> None:
    wait_ready(
        "sekmet", ehr.process, f"{ehr.direct_url}/metadata", (200, 401), ehr.folder / "sekmet.log"
    )


def wait_ready(
    name: str,
    process: subprocess.Popen[bytes],
    url: str,
    ready: tuple[int, ...],
    log: Path,
    seconds: float = 40,
) -> None:
    """Poll `url` until it answers one of the `ready` statuses; fail, with the end of `log`,
    when the process exits first or the time is up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code in ready:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not become ready within {seconds:.0f} s")


def load_sample(
    ehr: Ehr, visits: int, seed: int, shape: str = "theracharge", **extra: Any
) -> dict[str, Any]:
    """Generate sample visits (written the `shape` way) and load them with one transaction;
    return the Bundle."""
    from plugin.sample import SampleSpec, as_transaction, generate, us_core

    resources = generate(SampleSpec(visits=visits, seed=seed, **extra))
    bundle = as_transaction(us_core(resources) if shape == "us-core" else resources)
    ehr.post(json.loads(json.dumps(bundle)))
    return bundle


def smart_server_auth(jwks: dict[str, Any]) -> dict[str, Any]:
    """sekmet's settings for guarding its API with SMART Backend Services, knowing one client:
    TheraCharge with the public keys `jwks`."""
    return {
        "types": ["smart"],
        "enforce_scopes": True,
        "token_lifetime": 600,
        "smart_clients": [
            {"client_id": "theracharge", "jwks": jwks, "scopes": "system/*.read system/*.write"}
        ],
    }


def copy_key_pair(folder: Path) -> tuple[Path, dict[str, Any]]:
    """A fresh RSA key for SMART Backend Services: the private PEM file and the public JWKS."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "theracharge-private.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": "theracharge-test", "alg": "RS384", "use": "sig"})
    return path, {"keys": [public]}


def remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
