"""A FHIR client for the configured EHR, with the configured authentication."""

from __future__ import annotations

from plugin.gateway.auth import Auth, BearerAuth, NoAuth, SharedTokens, SmartBackendAuth
from plugin.gateway.client import ClientOptions, EhrSession, FhirClient
from plugin.gateway.connection import FhirConnection


def connect(
    connection: FhirConnection, base_url: str | None = None, shared: SharedTokens | None = None
) -> FhirClient:
    """A client for `base_url` (default: THERACHARGE_FHIR_BASE_URL); `shared`: where every
    instance keeps the SMART access token (the database, when several instances run)."""
    base = (base_url or connection.base_url or "").rstrip("/")
    if not base:
        raise ValueError("no FHIR server: set THERACHARGE_FHIR_BASE_URL or pass --fhir-base")
    session = EhrSession()
    options = ClientOptions(
        connect_timeout=connection.connect_timeout,
        read_timeout=connection.read_timeout,
        retry_total_seconds=connection.retry_seconds,
        page_cap=connection.page_cap,
    )
    auth: Auth = NoAuth()
    if connection.token:
        auth = BearerAuth(connection.token)
    elif connection.uses_smart and connection.smart_private_key and connection.smart_client_id:
        auth = SmartBackendAuth(
            base,
            connection.smart_client_id,
            connection.smart_private_key,
            connection.smart_kid or "",
            connection.smart_scopes,
            session,
            (connection.connect_timeout, connection.read_timeout),
            shared=shared,
        )
    return FhirClient(base, auth, options, session)


def connect_with(connection: FhirConnection, base_url: str, auth: Auth) -> FhirClient:
    """A client for another server (a CDS client's fhirServer) with its own credentials."""
    options = ClientOptions(
        connect_timeout=connection.connect_timeout,
        read_timeout=connection.read_timeout,
        retry_total_seconds=connection.retry_seconds,
        page_cap=connection.page_cap,
    )
    return FhirClient(base_url.rstrip("/"), auth, options)
