"""Who is calling: API tokens (by their SHA-256, with a role) and the shared secret of FHIR
Subscription notifications. CDS Hooks clients' JWTs are checked in cds_auth.py. Nothing here
logs or answers a token."""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import g, request, session

from plugin.config.tokens import match_token
from plugin.errors import Forbidden, Unauthorized
from plugin.web.state import app_state

log = logging.getLogger(__name__)
View = TypeVar("View", bound=Callable[..., Any])


def bearer_caller(*roles: str) -> str:
    """Who presented the API token, if its role is one of `roles` (401 unknown, 403 role).

    Tokens are compared by their SHA-256 only; none is ever logged.
    """
    tokens = app_state().settings.service.api_tokens
    header = request.headers.get("Authorization", "")
    if not header and session.get("who"):
        return _session_caller(roles)
    if not header.startswith("Bearer ") or not tokens:
        raise Unauthorized("no API bearer token")
    found = match_token(tokens, header.removeprefix("Bearer "))
    if found is None:
        raise Unauthorized("unknown API token")
    name, role = found
    if role not in roles:
        log.warning("token %s (role %s) refused for %s", name, role, request.path)
        raise Forbidden(f"the {role} role cannot do this")
    g.caller_role = role
    return name


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_HEADER = "X-CSRF-Token"


def _session_caller(roles: tuple[str, ...]) -> str:
    """Someone signed in to the pages (with an API token, whose role the session keeps) calls
    the API from them: a change needs the page's CSRF token in the X-CSRF-Token header, as a
    form needs it in its field (a cookie alone never changes anything)."""
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, ""), str(session.get("csrf") or "-")
    ):
        raise Forbidden(f"a change from a signed-in page needs its {CSRF_HEADER} header")
    role = str(session.get("role") or "")
    if role not in roles:
        raise Forbidden(f"the {role} role cannot do this")
    g.caller_role = role
    return str(session["who"])


def notification_sender() -> None:
    """The notification carries our shared secret in its header (401 otherwise)."""
    settings = app_state().settings.service
    expected = settings.notification_secret
    given = request.headers.get(settings.notification_header, "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("notification without the shared secret")


def requires(*roles: str) -> Callable[[View], View]:
    """The view answers only callers whose API token has one of `roles` (401, 403 otherwise),
    checked before the request's body or parameters are read; `g.caller` names who called."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            g.caller = bearer_caller(*roles)
            return view(*args, **kwargs)

        return cast(View, checked)

    return decorate


def current_role() -> str:
    """The role of the API token this request presented (bearer_caller checked it)."""
    return str(g.caller_role)
