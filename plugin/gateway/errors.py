"""Typed errors of the EHR's FHIR API: temporary (worth retrying) or fatal, with its own words."""

from __future__ import annotations

from typing import Any

from plugin.errors import UpstreamError


class FhirError(UpstreamError):
    """The EHR answered with an error, or could not be reached (our answer: 502).

    `status` is the EHR's HTTP status (None when no answer came); the message carries the
    server's OperationOutcome text when it sent one, and never a resource body or a token.
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After)


class TemporaryFhirError(FhirError):
    """Connection failures, timeouts, 408, 429 and 5xx: the same request may succeed later."""


class FatalFhirError(FhirError):
    """Any other 4xx: the request itself is wrong, or not allowed; repeating it will not help."""


class VersionConflict(FatalFhirError):
    """412 Precondition Failed: someone changed the resource since we read it."""


def outcome_text(body: Any) -> str:
    """The diagnostics/details of an OperationOutcome, in one line; empty when there is none."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    parts = []
    for issue in body.get("issue") or ():
        if not isinstance(issue, dict):
            continue
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
        parts.append(f"{issue.get('severity', 'error')}: {text or issue.get('code', '')}")
    return "; ".join(parts)


TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def error_for(
    status: int, url: str, body: Any, method: str, retry_after: float | None = None
) -> FhirError:
    """The typed error of an HTTP error answer (the URL without its query: never log it)."""
    said = outcome_text(body)
    where = url.split("?", 1)[0]
    message = f"{method} {where} → HTTP {status}" + (f": {said}" if said else "")
    if status == 412:
        return VersionConflict(message, status, url)
    if status in TEMPORARY_STATUSES or status >= 500:
        return TemporaryFhirError(message, status, url, retry_after)
    return FatalFhirError(message, status, url)
