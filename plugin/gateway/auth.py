"""How we authenticate to the EHR: no auth, a static bearer token, or SMART Backend Services.

SMART Backend Services (SMART App Launch 2.x, client-confidential-asymmetric): discover the token
endpoint from {base}/.well-known/smart-configuration, sign a private_key_jwt client assertion
(RS384 or ES384, with kid, jti and a 5-minute expiry), exchange it for an access token with the
client_credentials grant, cache the token until shortly before it expires, and get a new one once
when the EHR answers 401. Keys and tokens never appear in logs or messages. Where several
instances run (PostgreSQL), the token is kept in the shared database too (`SharedTokens`), so
each instance and worker uses the one token rather than fetching its own.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from plugin.deadline import OutOfTime, check, spent
from plugin.gateway.errors import (
    TEMPORARY_STATUSES,
    FatalFhirError,
    TemporaryFhirError,
    outcome_text,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # seconds: the SMART spec's maximum of five minutes
EXPIRY_MARGIN = 60  # renew a cached token this many seconds before it expires


class Auth(Protocol):
    def headers(self) -> dict[str, str]: ...

    def invalidate(self) -> bool:
        """Forget a token the EHR refused; True when a new one can be tried."""
        ...


class SharedTokens(Protocol):
    """Where every instance finds the current access token (plugin.store.Store)."""

    def shared_token(self, key: str) -> tuple[str, float] | None: ...

    def share_token(self, key: str, token: str | None, expires: float = 0.0) -> None: ...


class NoAuth:
    def headers(self) -> dict[str, str]:
        return {}

    def invalidate(self) -> bool:
        return False


@dataclass(frozen=True)
class BearerAuth:
    """A static token, e.g. for an EHR sandbox (THERACHARGE_FHIR_TOKEN)."""

    token: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def invalidate(self) -> bool:
        return False

    def __repr__(self) -> str:  # never show the token
        return "BearerAuth(token=***)"


def load_private_key(path: Path) -> tuple[Any, str]:
    """The signing key from a PEM file, and the algorithm it signs with (RS384 or ES384)."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable unencrypted PEM private key") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return key, "ES384"
    raise ValueError(f"{path}: SMART Backend Services needs an RSA or P-384 EC key")


class SmartBackendAuth:
    """Access tokens by SMART Backend Services, cached and renewed before they expire."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        key_path: Path,
        kid: str,
        scopes: str,
        session: requests.Session,
        timeout: tuple[float, float],
        clock: Callable[[], float] = time.time,
        shared: SharedTokens | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.key, self.algorithm = load_private_key(key_path)
        self.kid = kid
        self.scopes = scopes
        self.session = session
        self.timeout = timeout
        self.clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._token_url: str | None = None
        self._lock = threading.Lock()
        self.shared = shared
        self._key = hashlib.sha256(f"{self.base_url}|{client_id}|{scopes}".encode()).hexdigest()

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self.client_id!r}, kid={self.kid!r})"

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self.clock() >= self._expires - EXPIRY_MARGIN:
                self._token, self._expires = self._shared_or_fetched()
            return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> bool:
        with self._lock:
            if self.shared is not None and self._token is not None:
                held = self.shared.shared_token(self._key)
                if held is not None and held[0] == self._token:  # not one renewed since
                    self.shared.share_token(self._key, None)
            self._token = None
        return True

    def _shared_or_fetched(self) -> tuple[str, float]:
        if self.shared is not None:
            held = self.shared.shared_token(self._key)
            if held is not None and self.clock() < held[1] - EXPIRY_MARGIN:
                return held
        token, expires = self._fetch_token()
        if self.shared is not None:
            self.shared.share_token(self._key, token, expires)
        return token, expires

    def token_url(self) -> str:
        """Discovered once from {base}/.well-known/smart-configuration."""
        if self._token_url is None:
            url = f"{self.base_url}/.well-known/smart-configuration"
            body = self._post_or_get("GET", url)
            endpoint = body.get("token_endpoint") if isinstance(body, dict) else None
            if not isinstance(endpoint, str):
                raise FatalFhirError(f"GET {url}: no token_endpoint in the SMART configuration")
            self._token_url = endpoint
        return self._token_url

    def assertion(self, token_url: str) -> str:
        """The signed client assertion: iss = sub = client id, aud = the token endpoint."""
        now = int(self.clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        headers = {"kid": self.kid, "typ": "JWT"}
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers=headers)

    def _fetch_token(self) -> tuple[str, float]:
        url = self.token_url()
        form = {
            "grant_type": "client_credentials",
            "scope": self.scopes,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(url),
        }
        body = self._post_or_get("POST", url, form)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise FatalFhirError(f"POST {url}: the token response has no access_token")
        lifetime = body.get("expires_in", 300)
        return token, self.clock() + float(lifetime if isinstance(lifetime, int | float) else 300)

    def _post_or_get(self, method: str, url: str, form: dict[str, str] | None = None) -> Any:
        left = check(f"{method} {url}")  # within the request's time budget (plugin.deadline)
        timeout = (
            self.timeout
            if left is None
            else (min(self.timeout[0], left), min(self.timeout[1], left))
        )
        try:
            response = self.session.request(
                method, url, data=form, timeout=timeout, headers={"Accept": "application/json"}
            )
        except requests.Timeout as exc:
            if spent():
                raise OutOfTime(f"{method} {url}: no answer within the time budget") from exc
            raise TemporaryFhirError(f"{method} {url}: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            raise TemporaryFhirError(f"{method} {url}: {type(exc).__name__}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            detail = ""
            if isinstance(body, dict):
                detail = outcome_text(body) or str(body.get("error_description") or "")
            message = f"{method} {url} → HTTP {response.status_code}" + (
                f": {detail}" if detail else ""
            )
            temporary = response.status_code in TEMPORARY_STATUSES or response.status_code >= 500
            kind = TemporaryFhirError if temporary else FatalFhirError
            raise kind(message, response.status_code, url)
        return body
