"""`theracharge serve`'s gunicorn hooks: what happens around the fork and at a worker's exit."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from plugin.config.files import load_settings
from plugin.store import Store
from plugin.web.server import GunicornServer, _worker_exit
from tests.conftest import ISSUER


def test_the_app_is_loaded_without_a_database_connection_to_hand_to_the_workers(
    tmp_path: Path, jwks_file: Path
) -> None:
    settings = load_settings(
        {
            "THERACHARGE_INSTANCE_DIR": str(tmp_path / "instance"),
            "THERACHARGE_CDS_ISSUERS": ISSUER,
            "THERACHARGE_CDS_JWKS": str(jwks_file),
            "THERACHARGE_PUBLIC_URL": "https://theracharge.example.org",
        }
    )
    server = GunicornServer(settings, {"bind": "127.0.0.1:0", "workers": 1})
    app = server.load()
    pool = app.extensions["theracharge"].store.engine.pool
    assert pool.checkedin() == 0  # migrations and seeding used one; it was closed before fork
    assert app.test_client().get("/readyz").status_code == 200  # and opened again on use


def test_a_stopping_gunicorn_worker_writes_its_queued_ledger_rows(make_app: Any) -> None:
    app = make_app(THERACHARGE_CDS_AUTH="disabled")
    state = app.extensions["theracharge"]
    assert state.store._ledger is not None  # the service queues its ledger rows
    state.store._ledger.interval = 60  # the thread would not write for a minute
    state.store.record_run("e9", "cds-hook", "preview", [], [], {})
    elsewhere = Store(state.store.url)  # another worker's view
    assert elsewhere.runs() == []
    _worker_exit(None, SimpleNamespace(app=SimpleNamespace(callable=app)))
    assert [r.encounter_id for r in elsewhere.runs()] == ["e9"]
