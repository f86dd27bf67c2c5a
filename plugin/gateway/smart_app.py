"""SMART App Launch from the EHR (SMART App Launch 2.x, EHR launch, public client with PKCE):
discover the authorize and token endpoints, exchange the authorization code for the launch
context. The access token is used for nothing else and never kept or logged."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

import requests

from plugin.gateway.errors import FatalFhirError

TIMEOUT = (5.0, 15.0)


def smart_configuration(iss: str) -> dict[str, Any]:
    """The EHR's {iss}/.well-known/smart-configuration (authorization and token endpoints)."""
    url = f"{iss.rstrip('/')}/.well-known/smart-configuration"
    try:
        answer = requests.get(url, headers={"Accept": "application/json"}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise FatalFhirError(f"SMART discovery failed: {type(exc).__name__}", None) from exc
    body = answer.json() if answer.ok else None
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("authorization_endpoint", "token_endpoint")
    ):
        raise FatalFhirError(
            f"SMART discovery: {url} names no authorization and token endpoints", answer.status_code
        )
    return body


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge) for PKCE S256 (RFC 7636), required by SMART 2.x."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def exchange_code(
    token_endpoint: str, code: str, redirect_uri: str, client_id: str, verifier: str
) -> dict[str, Any]:
    """The token response for an authorization code: its launch context (encounter, patient,
    fhirUser …). A refusal is an error naming the status, never the token."""
    try:
        answer = requests.post(
            token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "code_verifier": verifier,
            },
            headers={"Accept": "application/json"},
            timeout=TIMEOUT,
        )
    except requests.RequestException as exc:
        raise FatalFhirError(f"SMART token exchange failed: {type(exc).__name__}", None) from exc
    body = answer.json() if answer.ok else None
    if not isinstance(body, dict) or not body.get("access_token"):
        raise FatalFhirError(f"SMART token exchange refused (HTTP {answer.status_code})", None)
    return body
