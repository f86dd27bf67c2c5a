"""A test app with its own database, CDS client keys, and prefetch built from a clean record."""

from __future__ import annotations

from tests.conftest import ISSUER, KID, SERVICE_URL  # noqa: F401 (re-exported for the tests)
