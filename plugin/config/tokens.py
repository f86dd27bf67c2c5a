"""API tokens: who may do what (the roles) and how a token is kept (its SHA-256, never itself)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

# admin changes mapping tables and payer rules; billing reads, works the hold queue and writes
# charges through the API; viewer reads.
ROLES = ("admin", "billing", "viewer")


def token_hash(token: str) -> str:
    """How an API token is stored and compared: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def match_token(tokens: Mapping[str, tuple[str, str]], presented: str) -> tuple[str, str] | None:
    """(name, role) of the THERACHARGE_API_TOKENS entry whose hash is the presented token's, or
    None: every entry compared in constant time, so the answer's timing tells nothing. The
    one matcher of the API (plugin.web.auth) and the sign-in page."""
    digest = token_hash(presented.strip())
    found = None
    for stored, who in tokens.items():
        if hmac.compare_digest(stored, digest):
            found = who
    return (str(found[0]), str(found[1])) if found else None
