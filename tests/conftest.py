"""Shared fixtures: the shipped settings, loaded once."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from sqlalchemy import MetaData

from plugin.config.files import Settings, load_settings
from plugin.store import Store
from plugin.web.app import create_app
from tests.pg import running_postgres


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-golden",
        action="store_true",
        help="rewrite tests/golden/* from the current outputs (then review the diff)",
    )


@pytest.fixture(autouse=True)
def _command_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command run in a test (`process`, `backfill` …) records its runs in an instance folder
    of the test's own (its default database), never in ./instance of the checkout; a command
    given its own folder or database (the demo, a service's CLI) keeps it."""
    if not {"THERACHARGE_DATABASE_URL", "THERACHARGE_INSTANCE_DIR"} & set(os.environ):
        monkeypatch.setenv("THERACHARGE_INSTANCE_DIR", str(tmp_path / "commands"))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings({})


# --- a CDS client's signing key (the EHR's), shared by the web and integration tests ---------

ISSUER = "https://ehr.example.org"
KID = "ehr-key-1"
SERVICE_URL = "http://localhost/cds-services/therapy-charges"


@pytest.fixture(scope="session")
def ehr_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def jwks_file(tmp_path: Path, ehr_key: ec.EllipticCurvePrivateKey) -> Path:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ehr_key.public_key()))
    public.update({"kid": KID, "alg": "ES384", "use": "sig"})
    path = tmp_path / "ehr-jwks.json"
    path.write_text(json.dumps({"keys": [public]}))
    return path


@pytest.fixture
def sign(ehr_key: ec.EllipticCurvePrivateKey) -> Callable[..., str]:
    def token(aud: str = SERVICE_URL, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        claims.update(overrides)
        headers = {"kid": overrides.pop("kid", KID)} if "kid" in overrides else {"kid": KID}
        claims.pop("kid", None)
        return jwt.encode(claims, ehr_key, algorithm="ES384", headers=headers)

    return token


@pytest.fixture
def make_app(tmp_path: Path, jwks_file: Path) -> Callable[..., Flask]:
    def build(**env: str) -> Flask:
        base = {
            "THERACHARGE_INSTANCE_DIR": str(tmp_path / "instance"),
            "THERACHARGE_CDS_ISSUERS": ISSUER,
            "THERACHARGE_CDS_JWKS": str(jwks_file),
            "THERACHARGE_PUBLIC_URL": "http://localhost",
        }
        return create_app(load_settings({**base, **env}), start_worker=False)

    return build


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    # Not under pytest's own temporary folder: the postgres user cannot enter root's.
    folder = Path(tempfile.mkdtemp(prefix="theracharge-pg-"))
    try:
        with running_postgres(folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'instance' / 'theracharge.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = Store(url)
    if request.param == "postgresql":  # one server for the session: start each test empty
        every = MetaData()
        every.reflect(store.engine)
        every.drop_all(store.engine)
    store.migrate()
    return store
