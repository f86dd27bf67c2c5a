"""The lean route: the common CDS Hooks call answered beside Flask's request machinery.

EHRs call the hook on every documented visit, so its fixed cost per call matters
(docs/performance.md "The service"). Flask spends about 100 µs on any request before and
after the view (a request context, the session, URL matching, before/after functions, a
Response object). This WSGI layer in front of the Flask app answers the one call that is
most of the traffic — `POST /cds-services/therapy-charges` with a JSON body of known length
that `plain_hook_request` accepts — itself, with the Flask route's steps: the body limit, the
settings refresh, the request id, the client's JWT (`ClientVerifier.verify`, audience the
configured public URL), the decision (`cds_hooks.answer`), metrics and logs. The body is read
before the token is checked (Flask checks the token first), which changes no answer: a body
that is not the plain call goes to Flask before any check, and Flask checks the token first.
Everything else goes to Flask unchanged, the body put back: another path or method, a body
the schema must load or refuse, an unknown length.
An error raised on the way is answered by Flask's own error handlers in a request context
built for it, so every error body is the one the Flask route gives.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from flask import Flask, g

from plugin.pipeline.hooks import SERVICE_ID
from plugin.schemas.cds import plain_hook_request
from plugin.web import cds_hooks
from plugin.web.observability import CALL, count_request

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
PATH = f"/cds-services/{SERVICE_ID}"
ENDPOINT = "/cds-services/<service_id>"  # the Flask rule's name for it in the metrics


class HookRoute:
    """WSGI middleware: the plain hook call here, every other request to `flask_app`."""

    def __init__(self, app: Flask, flask_app: WsgiApp) -> None:
        self.app = app
        self.flask_app = flask_app
        self.state = app.extensions["theracharge"]
        self.limit = self.state.settings.service.max_request_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        data = self._plain(environ)
        if data is None:
            return self.flask_app(environ, start_response)
        started = time.perf_counter()
        request_id = environ.get("HTTP_X_REQUEST_ID") or uuid.uuid4().hex
        bound = CALL.set((request_id, data["hookInstance"]))
        try:
            verifier = self.state.cds_verifier
            if verifier is not None:
                audience = f"{self.state.settings.service.public_url}{PATH}"
                verifier.verify(environ.get("HTTP_AUTHORIZATION"), audience)
            body = orjson.dumps(cds_hooks.answer(self.state, data))
        except Exception as exc:  # noqa: BLE001 -- answered by Flask's handlers, plugin.web.errors
            return self._flask_error(environ, start_response, exc, request_id, data, started)
        finally:
            CALL.reset(bound)
        count_request(ENDPOINT, 200, started)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("X-Request-Id", request_id),
            ],
        )
        return [body]

    def _plain(self, environ: dict[str, Any]) -> dict[str, Any] | None:
        """The loaded call when it is the plain one (the body read, and put back for Flask
        whatever the answer); None for anything Flask should answer."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != PATH:
            return None
        if not _is_json(str(environ.get("CONTENT_TYPE", ""))):
            return None  # Flask reads no JSON from it either: its route refuses it
        length = str(environ.get("CONTENT_LENGTH", ""))
        if not length.isdigit() or int(length) > self.limit:
            return None  # unknown length (chunked) or too large: Flask's limits answer
        if self.state.cds_verifier is not None and not self.state.settings.service.public_url:
            return None  # --dev without a public URL: the audience comes from the Host header
        raw = environ["wsgi.input"].read(int(length))
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            loaded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return plain_hook_request(loaded) if isinstance(loaded, dict) else None

    def _flask_error(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        error: Exception,
        request_id: str,
        data: dict[str, Any],
        started: float,
    ) -> Iterable[bytes]:
        """Flask's answer to `error`, in a request context of this call (its error handlers,
        its after-request functions: metrics and the X-Request-Id header)."""
        environ["wsgi.input"].seek(0)
        with self.app.request_context(environ):
            g.started, g.request_id, g.hook_instance = started, request_id, data["hookInstance"]
            try:
                answered = self.app.handle_user_exception(error)
            except Exception as unhandled:  # noqa: BLE001 -- Flask's last resort, as in wsgi_app
                answered = self.app.handle_exception(unhandled)
            response = self.app.finalize_request(answered)
            return response(environ, start_response)


def _is_json(content_type: str) -> bool:
    """What Flask's `request.is_json` says of a Content-Type: application/json or
    application/*+json, parameters aside."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )
