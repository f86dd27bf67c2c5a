"""`theracharge serve`: the app under gunicorn (production), or Flask's server with --dev."""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from prometheus_client import multiprocess

from plugin.config.files import Settings
from plugin.config.variables import WORKER_TIMEOUT_SECONDS
from plugin.web import hl7_intake
from plugin.web.app import check_audience, create_app

log = logging.getLogger(__name__)


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn with our app object: sync workers (steadier p99 here than gthread,
    docs/performance.md), the app loaded before forking, the cyclic GC frozen after."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("post_fork", _post_fork)
        self.cfg.set("worker_exit", _worker_exit)
        self.cfg.set("child_exit", _child_exit)
        # gunicorn ≥ 25.1 opens a control socket at one path per user ($XDG_RUNTIME_DIR or
        # ~/.gunicorn/gunicorn.ctl), which every instance on the machine would share. We do not
        # use gunicornc: no socket.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Flask:
        app = create_app(self.settings, start_worker=False)  # workers start theirs after fork
        # No database connection may cross the fork: two processes on one SQLite handle or
        # PostgreSQL socket corrupt each other (SQLAlchemy, "Using Connection Pools with
        # Multiprocessing or os.fork()"). Each worker opens its own on first use.
        app.extensions["theracharge"].store.engine.dispose()
        gc.freeze()  # long-lived objects out of the collector's way
        return app


def _post_fork(server: Any, worker: Any) -> None:
    """Each worker process runs its own notification worker thread (threads do not survive fork)."""
    state = worker.app.callable.extensions["theracharge"]
    if state.worker is not None:
        state.worker.start()


def _child_exit(server: Any, worker: Any) -> None:
    """A worker gone: its live metric files are closed out (Prometheus multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _worker_exit(server: Any, worker: Any) -> None:
    """A worker stopping gracefully writes its queued ledger rows first."""
    state = worker.app.callable.extensions["theracharge"]
    if state.worker is not None:
        state.worker.stop()
    state.store.close()


# gunicorn's own log lines (booting workers, a worker timing out …) as JSON, like ours, one
# per line on stderr (plugin.web.observability.JsonFormatter); gunicorn merges this over its
# defaults.
GUNICORN_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "plugin.web.observability.JsonFormatter"}},
    "handlers": {
        "json": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["json"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["json"], "level": "INFO", "propagate": False},
    },
    "root": {"handlers": ["json"], "level": "INFO"},
}


def unconfigured(settings: Settings) -> list[str]:
    """What an IT admin has not set up yet, each with what it means, said at start."""
    service = settings.service
    found = []
    if not service.api_tokens:
        found.append(
            "THERACHARGE_API_TOKENS is empty: the charges API, the admin API and the pages accept "
            "no one (theracharge token-hash NAME makes an entry)"
        )
    if service.cds_auth and not service.cds_issuers:
        found.append(
            "THERACHARGE_CDS_ISSUERS is empty: every CDS Hooks call is refused (401) until the "
            "EHR's issuer and its JWKS (THERACHARGE_CDS_JWKS) are named"
        )
    if not service.notification_secret:
        found.append(
            "THERACHARGE_NOTIFICATION_SECRET is unset: every Subscription notification is "
            "refused (401)"
        )
    if not service.public_url:
        found.append(
            "THERACHARGE_PUBLIC_URL is unset: links in cards and the JWT audience cannot name "
            "the URL the EHR calls"
        )
    if not settings.fhir.base_url:
        found.append(
            "THERACHARGE_FHIR_BASE_URL is unset: hooks decide a visit from its prefetch alone "
            "and write nothing; notifications cannot be processed"
        )
    if service.shared_database and not service.secret_key:
        found.append(
            "THERACHARGE_SECRET_KEY is unset on a shared database: each instance signs the "
            "pages' sessions with a key of its own, so one instance does not know a sign-in "
            "made at another"
        )
    if service.broker_url and not service.shared_database:
        found.append(
            "THERACHARGE_BROKER_URL with SQLite: the workers must run on this machine, and a "
            "billing day's lock holds within one process only (THERACHARGE_DATABASE_URL: "
            "PostgreSQL for more)"
        )
    return found


def serve(settings: Settings, host: str, port: int, workers: int, dev: bool) -> None:
    check_audience(settings, dev)  # a ConfigError before anything starts: exit 2 naming it
    for warning in unconfigured(settings):
        log.warning("not configured: %s", warning)
    if dev:
        app = create_app(settings, dev=True)
        state = app.extensions["theracharge"]
        listener = hl7_intake.listener_for(state, state.queue)
        if listener is not None:
            listener.start()
        try:
            app.run(host=host, port=port, debug=False, threaded=True)
        finally:
            if listener is not None:
                listener.stop()
            state.store.close()
        return
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        "preload_app": True,
        # "-": gunicorn's access log through its logger, as JSON lines like ours (GUNICORN_LOGGING),
        # every credential in a URL redacted (plugin.web.observability.redact)
        "accesslog": "-" if settings.service.access_log else None,
        "timeout": WORKER_TIMEOUT_SECONDS,
        "logconfig_dict": GUNICORN_LOGGING,
    }
    listening = hl7_intake.spawn(settings)  # HL7 v2 events in: a process of its own
    try:
        GunicornServer(settings, options).run()
    finally:
        if listening is not None:
            listening.terminate()
            listening.join(10)
