"""Fetching a CDS Client's JWKS from its URL (HTTP to the EHR side stays in the gateway)."""

from __future__ import annotations

from typing import Any

import requests


def fetch_jwks(url: str, timeout: tuple[float, float] = (5.0, 10.0)) -> Any:
    """The JSON document at a JWKS URL; raises ValueError when it cannot be had."""
    try:
        answer = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
        answer.raise_for_status()
        return answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise ValueError(f"cannot fetch JWKS ({type(exc).__name__})") from exc
