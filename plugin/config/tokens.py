"""API tokens: who may do what (the roles) and how a token is kept (its SHA-256, never itself)."""

from __future__ import annotations

import hashlib

# admin changes mapping tables and payer rules; billing reads, works the hold queue and writes
# charges through the API; viewer reads.
ROLES = ("admin", "billing", "viewer")


def token_hash(token: str) -> str:
    """How an API token is stored and compared: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()
