"""create_app(settings): the Flask app factory. Resources are built once here and reached
through the app (app.extensions["theracharge"]), never module globals."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from flask import Flask, g, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

from plugin.config.effective import seed
from plugin.config.files import Settings, load_settings
from plugin.deadline import close_budget, open_budget
from plugin.errors import BadRequest
from plugin.pipeline.worker import NotificationWorker
from plugin.schemas.errors import ConfigError
from plugin.store import Store
from plugin.web import (
    admin,
    api_docs,
    cds_hooks,
    charges,
    errors,
    health,
    notifications,
    observability,
    pages,
    smart_launch,
    work,
)
from plugin.web.cds_auth import ClientVerifier
from plugin.web.hook_route import HookRoute
from plugin.web.state import AppState

log = logging.getLogger(__name__)


class OrjsonProvider(DefaultJSONProvider):
    """JSON in and out with orjson: about 3× faster than the standard library on our bodies
    (docs/performance.md)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=_default).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


def _default(obj: Any) -> Any:
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, Decimal):  # a schema's bound in /openapi.json: a JSON number
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _secret_key(settings: Settings) -> str:
    """THERACHARGE_SECRET_KEY, else one made on the first start and kept in the instance
    folder (every worker and restart signs the pages' sessions alike)."""
    if settings.service.secret_key:
        return settings.service.secret_key
    path = Path(settings.service.instance_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def check_audience(settings: Settings, dev: bool) -> None:
    """CDS clients' JWTs are checked against the URL the EHR calls (CDS Hooks 2.0: `aud` is
    the service's endpoint). Taken from the Host header, any host an attacker names would do:
    outside --dev the public URL must be configured."""
    service = settings.service
    if not service.cds_auth or service.public_url:
        return
    if not dev:
        raise ConfigError(
            "THERACHARGE_PUBLIC_URL: required to check the audience of CDS clients' tokens "
            "(the URL the EHR calls us at, e.g. https://theracharge.example.org)"
        )
    log.warning("THERACHARGE_PUBLIC_URL unset: --dev takes the JWT audience from the Host header")


OVER_LIMIT = "theracharge.body_over_limit"  # set by BodyLimit, answered 413 by _limit_body


class BodyLimit:
    """WSGI middleware: a body sent without a length (chunked; gunicorn marks it
    `wsgi.input_terminated`) is read here, at most one byte past the limit. Werkzeug would hand
    the app such a body silently cut at the limit under gunicorn (a truncated JSON document,
    then a 400 that says nothing of the size); here it is either whole, with its length set,
    or refused with 413 by `_limit_body` (its rest never read)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("CONTENT_LENGTH") and environ.get("wsgi.input_terminated"):
            raw = environ["wsgi.input"].read(self.limit + 1)
            if len(raw) > self.limit:
                environ[OVER_LIMIT], raw = True, b""
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
        return self.app(environ, start_response)


def _limit_body(limit: int) -> Callable[[], None]:
    """A body over the limit is refused with 413 before anything reads it, on every route;
    a bearer token in the query string is refused with 400 (RFC 6750 §2.3: it ends up in
    logs and browser histories; send it in the Authorization header, §2.1)."""

    def check() -> None:
        if request.environ.get(OVER_LIMIT) or (
            request.content_length is not None and request.content_length > limit
        ):
            raise RequestEntityTooLarge(f"the request body is over the {limit}-byte limit")
        if "access_token" in request.args:
            raise BadRequest(
                "access_token: a token in the URL is refused (it would be written to logs); "
                "send it as `Authorization: Bearer …`",
                [("access_token", "not accepted in the query string")],
            )

    return check


def _budget_every_request(app: Flask, seconds: float) -> None:
    """Every request's waits on the EHR and on a day's lock end within `seconds`
    (THERACHARGE_REQUEST_BUDGET_SECONDS; a hook call: the shorter hook budget, opened inside
    it): then 504 with Retry-After, never gunicorn's worker timeout (plugin.deadline)."""

    @app.before_request
    def start_budget() -> None:
        g.budget = open_budget(seconds)

    @app.teardown_request
    def end_budget(_: BaseException | None) -> None:
        token = g.pop("budget", None)
        if token is not None:
            close_budget(token)


def create_app(
    settings: Settings | None = None, start_worker: bool = True, dev: bool = False
) -> Flask:
    settings = settings or load_settings()
    check_audience(settings, dev)
    app = Flask("theracharge")
    # The limit also bounds bodies sent without a length (chunked): reading stops past it.
    app.config.update(
        MAX_CONTENT_LENGTH=settings.service.max_request_bytes,
        MAX_FORM_MEMORY_SIZE=min(settings.service.max_request_bytes, 500_000),
    )
    app.before_request(_limit_body(settings.service.max_request_bytes))
    _budget_every_request(app, settings.service.request_budget_seconds)
    app.json = OrjsonProvider(app)
    app.secret_key = _secret_key(settings)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.config.update(
        API_TITLE="TheraCharge",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        # the reference page: Swagger UI served from our own copy (hospital networks block CDNs)
        OPENAPI_SWAGGER_UI_PATH="api-docs",
        OPENAPI_SWAGGER_UI_URL="/api-docs/assets/",
        OPENAPI_SWAGGER_UI_CONFIG={"supportedSubmitMethods": []},  # reading, not calling
        JSON_SORT_KEYS=False,
    )
    store = Store(settings.service.database_url)
    with store.exclusive("theracharge-start"):  # instances starting together: one at a time
        store.migrate()
        seed(store, settings)  # first start: config/ becomes version 1 of each managed table
    store.defer_ledger()  # ledger rows leave the request path (plugin/store/ledger.py)
    store.retention = timedelta(days=settings.service.ledger_retention_days)
    verifier = None
    if settings.service.cds_auth:
        verifier = ClientVerifier(
            settings.service.cds_issuers, dict(settings.service.cds_jwks), store.first_use
        )
    else:
        log.warning("THERACHARGE_CDS_AUTH=disabled: CDS Hooks calls are NOT authenticated")
    state = AppState(settings, store, base_settings=settings, cds_verifier=verifier)
    state.refresh()
    if settings.service.broker_url:
        # Imported only with a broker: the embedded default never loads Celery.
        from plugin.pipeline.celery_app import Sender

        state.send = Sender(settings, store)
    # without a broker the worker; with one, the sweeper (plugin/pipeline/worker.py)
    state.worker = NotificationWorker(state, send=state.send)
    app.extensions["theracharge"] = state
    api = api_docs.Api(app, spec_kwargs={"extra_plugins": [api_docs.Components()]})
    app.add_url_rule("/api-docs/assets/<path:name>", "api_docs_assets", api_docs.asset)
    for blueprint in (
        cds_hooks.blp,
        charges.blp,
        notifications.blp,
        health.blp,
        admin.blp,
        work.blp,
    ):
        api.register_blueprint(blueprint)
    app.register_blueprint(pages.bp)
    app.register_blueprint(smart_launch.bp)
    app.before_request(state.refresh)
    errors.register(app)
    observability.install(app)
    # the common CDS Hooks call answered before Flask's machinery (plugin/web/hook_route.py)
    # (the lean route takes only bodies of a known length: a chunked one goes on to Flask,
    # through BodyLimit, whole or refused before any route reads it)
    limited = BodyLimit(app.wsgi_app, settings.service.max_request_bytes)
    app.wsgi_app = HookRoute(app, limited)  # type: ignore[method-assign]
    if start_worker:
        state.worker.start()  # pending notifications resume at start
    return app
