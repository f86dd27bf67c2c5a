"""One error model for the service and the command line.

Every error TheraCharge raises on purpose carries its HTTP status, a short code, a message that
names what is wrong (never a resource body or a token) and the fields at fault as (path,
message) pairs. The web layer answers all of them in one handler (plugin/web/errors.py); the
command line turns a bad request into exit status 2 (plugin/commands/main.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Field = tuple[str, str]  # (path, message): "services[2].code", "not in the catalog"


class TheraChargeError(Exception):
    """An error with its answer: `http_status`, `code`, `message`, `fields`."""

    http_status = 500
    code = "internal"

    def __init__(self, message: str, fields: Iterable[Field] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.fields: tuple[Field, ...] = tuple(fields)

    @property
    def field_map(self) -> dict[str, str]:
        """The fields as {path: message}, as JSON bodies and forms show them."""
        return dict(self.fields)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.field_map
        return body


class BadRequest(TheraChargeError):
    """The request or the command line is malformed (HTTP 400, exit status 2)."""

    http_status, code = 400, "bad-request"


class UsageError(BadRequest):
    """Bad input for a command: exit status 2 with this one-line message."""


class Unauthorized(TheraChargeError):
    """No valid credentials (HTTP 401). The reason is logged, never answered."""

    http_status, code = 401, "unauthorized"


class Forbidden(TheraChargeError):
    """Valid credentials whose role may not do this (HTTP 403)."""

    http_status, code = 403, "forbidden"


class NotFoundError(TheraChargeError):
    """What was asked for does not exist (HTTP 404)."""

    http_status, code = 404, "not-found"


class Conflict(TheraChargeError):
    """The thing changed since the caller read it (HTTP 409)."""

    http_status, code = 409, "conflict"


class DataUnavailable(TheraChargeError):
    """The data needed was neither sent nor fetchable (HTTP 412, CDS Hooks prefetch)."""

    http_status, code = 412, "data-unavailable"


class Invalid(TheraChargeError):
    """Well-formed input that does not validate (HTTP 422), naming each field."""

    http_status, code = 422, "invalid"


class UpstreamError(TheraChargeError):
    """The EHR failed or refused (HTTP 502 with its own words); the gateway's errors."""

    http_status, code = 502, "ehr-error"


class ServiceUnavailable(TheraChargeError):
    """Something we need is not there now: no EHR configured, the database away (HTTP 503)."""

    http_status, code = 503, "unavailable"


class VisitTooLarge(Invalid):
    """A visit with more procedures than THERACHARGE_MAX_PROCEDURES: refused whole, never
    decided in part (HTTP 422; a batch records it as that encounter's failure)."""

    def __init__(self, encounter: str, count: int, limit: int) -> None:
        super().__init__(
            f"{count} procedures; at most {limit} are decided for one visit "
            "(THERACHARGE_MAX_PROCEDURES)"
        )
        self.encounter = encounter

    def body(self) -> dict[str, Any]:
        return {**super().body(), "message": f"{self.encounter}: {self.message}"}


def describe(fields: Iterable[Field]) -> str:
    """The fields in one line: `path: message; path: message`."""
    return "; ".join(f"{path}: {message}" for path, message in fields)
