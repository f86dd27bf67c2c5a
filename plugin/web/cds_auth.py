"""Verifying the CDS Client's JWT (CDS Hooks 2.0 "Trusting CDS Clients" and its best practices).

Issuer on the allow-list; key from that issuer's JWKS (a file or a URL) by `kid`, re-fetched
(at most once a minute) when an unknown `kid` arrives; asymmetric algorithms only; `aud` equal to
the exact URL called; `exp` and `iat` checked; each `jti` accepted once. Any failure is a 401
with no detail: the reason goes to our log, never to the caller.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import orjson

from plugin.errors import Unauthorized
from plugin.gateway.jwks import fetch_jwks

log = logging.getLogger(__name__)

ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
REFETCH_INTERVAL = 60.0  # seconds between two fetches of one JWKS URL for unknown kids
LEEWAY = 60  # seconds of clock skew tolerated on exp / iat
# A CDS client's JWT lives minutes (CDS Hooks 2.0 "Trusting CDS Clients" recommends an `exp` of
# five minutes); one that claims to live longer than an hour is refused, so the replay cache
# never has to remember a `jti` for years (or past the calendar's end).
MAX_LIFETIME = 3600


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, unverified: only to choose the issuer's key and
    algorithm (PyJWT then verifies the token whole, once). Read here rather than by two more
    PyJWT decodes, each of which checks the token's characters one by one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthorized("malformed token: not three dot-separated parts")
    try:
        header, claims = (
            orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            for part in parts[:2]
        )
    except (ValueError, binascii.Error) as exc:
        raise Unauthorized(f"malformed token: {type(exc).__name__}") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Unauthorized("malformed token: header or claims not an object")
    return header, claims


class JwksSource:
    """The keys of one issuer: a JWKS file, or a URL fetched and cached."""

    def __init__(self, where: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.where = where
        self.clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched = -REFETCH_INTERVAL * 2
        self._lock = threading.Lock()

    def key(self, kid: str) -> Any:
        with self._lock:
            if kid not in self._keys and self.clock() - self._fetched >= REFETCH_INTERVAL:
                self._keys = self._load()
                self._fetched = self.clock()
            if kid not in self._keys:
                raise Unauthorized(f"unknown kid {kid!r} for {self.where}")
            return self._keys[kid]

    def _load(self) -> dict[str, Any]:
        try:
            if self.where.startswith(("http://", "https://")):
                document = fetch_jwks(self.where)
            else:
                document = orjson.loads(Path(self.where).read_bytes())
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise Unauthorized(f"cannot load JWKS {self.where}: {type(exc).__name__}") from exc
        return {k.key_id: k for k in keys if k.key_id}


class ClientVerifier:
    """Trust decisions for incoming CDS Hooks calls."""

    def __init__(
        self,
        issuers: tuple[str, ...],
        jwks: dict[str, str],
        first_use: Callable[[str, str, datetime], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuers = issuers
        self.sources = {name: JwksSource(where) for name, where in jwks.items()}
        self.first_use = first_use
        self.clock = clock

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The verified claims of the bearer JWT; raises Unauthorized otherwise."""
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("no bearer token")
        token = authorization.removeprefix("Bearer ").strip()
        header, unverified = _peek(token)
        algorithm = header.get("alg")
        if algorithm not in ASYMMETRIC:
            raise Unauthorized(f"algorithm {algorithm!r} is not allowed")
        issuer = unverified.get("iss")
        if issuer not in self.issuers:
            raise Unauthorized(f"issuer {issuer!r} is not on the allow-list")
        source = self.sources.get(issuer) or self.sources.get("*")
        if source is None or not header.get("kid"):
            raise Unauthorized("no JWKS for the issuer, or no kid")
        key = source.key(str(header["kid"]))
        claims = self._check(token, key, algorithm, audience, issuer)
        expires = datetime.fromtimestamp(claims["exp"], UTC)
        if not self.first_use(issuer, str(claims["jti"]), expires):
            raise Unauthorized("replayed jti")
        return claims

    def _check(
        self, token: str, key: Any, algorithm: str, audience: str, issuer: str
    ) -> dict[str, Any]:
        family = "EC" if algorithm.startswith("ES") else "RSA"
        if key.key_type != family:
            raise Unauthorized(f"a {algorithm} token cannot be checked with a {key.key_type} key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"rejected: {type(exc).__name__}: {exc}") from exc
        now = self.clock()
        if claims["iat"] > now + LEEWAY:
            raise Unauthorized("issued in the future")
        if claims["iat"] < now - MAX_LIFETIME - LEEWAY:
            # a token issued longer ago than any token may live: its exp is a forgery or a
            # clock far off, and its jti may have left the replay cache
            raise Unauthorized(f"issued more than {MAX_LIFETIME} s ago")
        if claims["exp"] > now + MAX_LIFETIME:
            raise Unauthorized(f"exp more than {MAX_LIFETIME} s ahead")
        return claims
