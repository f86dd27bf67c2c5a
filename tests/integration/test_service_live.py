"""The HTTP service against a real FHIR server: a signed hook, a Subscription, the charges API."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from flask import Flask
from werkzeug.serving import make_server

from plugin.config.files import load_settings
from plugin.gateway.client import FhirClient
from plugin.pipeline.hooks import prefetch_from
from plugin.store import Store
from plugin.web.app import create_app
from tests.ehr import Ehr, free_port
from tests.helpers.live import SECRET, env_for, ours


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Our app on a real port, so the EHR can call us."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(5)


def test_a_signed_hook_call_with_prefetch_writes_the_visits_charge_items(
    ehr: Ehr, tmp_path: Path, jwks_file: Path, sign
) -> None:
    app = create_app(
        load_settings(env_for(ehr, tmp_path, jwks_file, THERACHARGE_WRITE_MODE="direct")),
        start_worker=False,
    )
    body = {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": ehr.base_url,
        "context": {
            "userId": "PractitionerRole/x",
            "patientId": "pat-0001",
            "encounterId": "enc-0001",
        },
        "prefetch": prefetch_from(FhirClient(ehr.base_url), "enc-0001"),
    }
    answer = app.test_client().post(
        "/cds-services/therapy-charges", json=body, headers={"Authorization": f"Bearer {sign()}"}
    )
    assert answer.status_code == 200, answer.json
    summaries = [c["summary"] for c in answer.json["cards"]]
    assert any(s.startswith("ChargeItems written:") for s in summaries), summaries
    stored = ours(ehr, app.extensions["theracharge"].settings)
    assert stored
    assert all(k.startswith("Patient/pat-0001/") for k in stored)


def test_a_subscription_notifies_us_and_the_charge_items_appear(
    ehr: Ehr, tmp_path: Path, jwks_file: Path
) -> None:
    app = create_app(load_settings(env_for(ehr, tmp_path, jwks_file)), start_worker=True)
    state = app.extensions["theracharge"]
    try:
        with serving(app) as url:
            from fhir_mappings.subscription import subscription
            from plugin.gateway.factory import connect

            client = connect(state.settings.fhir)
            client.create(
                "Subscription",
                subscription(
                    f"{url}/notifications/fhir", state.settings.service.notification_header, SECRET
                ),
            )
            encounter = requests.get(f"{ehr.base_url}/Encounter/enc-0002", timeout=10).json()
            encounter["status"] = "finished"  # the visit is signed again, as finished
            requests.put(
                f"{ehr.base_url}/Encounter/enc-0002", json=encounter, timeout=10
            ).raise_for_status()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(
                k.startswith("Patient/pat-0002/") for k in ours(ehr, state.settings)
            ):
                time.sleep(0.3)
            stored = [k for k in ours(ehr, state.settings) if k.startswith("Patient/pat-0002/")]
            assert stored, "no ChargeItems appeared for enc-0002"
            done = [n for n in state.store.notifications() if n.encounter_id == "enc-0002"]
            assert [n.status for n in done] == ["done"]
            assert state.store.runs("enc-0002")[0].trigger == "notification"
    finally:
        state.worker.stop()


def test_a_notification_received_while_stopped_is_processed_once_after_restart(
    ehr: Ehr, tmp_path: Path, jwks_file: Path
) -> None:
    settings = load_settings(env_for(ehr, tmp_path, jwks_file))
    stopped = create_app(settings, start_worker=False)  # up enough to acknowledge, then gone
    encounter = requests.get(f"{ehr.base_url}/Encounter/enc-0003", timeout=10).json()
    headers = {"X-TheraCharge-Secret": SECRET}
    first = stopped.test_client().put(
        "/notifications/fhir/Encounter/enc-0003", json=encounter, headers=headers
    )
    assert first.json == {"queued": True}
    assert ours(ehr, settings) == {}
    restarted = create_app(settings, start_worker=True)  # same database: the pending one resumes
    state = restarted.extensions["theracharge"]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and state.store.notifications()[0].status != "done":
            time.sleep(0.2)
        again = restarted.test_client().put(
            "/notifications/fhir/Encounter/enc-0003", json=encounter, headers=headers
        )
        assert again.json == {"queued": False}  # the same version is processed once
    finally:
        state.worker.stop()
    rows = state.store.notifications()
    assert [(n.encounter_id, n.status, n.attempts) for n in rows] == [("enc-0003", "done", 1)]
    assert len(state.store.runs("enc-0003")) == 1
    assert ours(ehr, settings)


def test_the_charges_api_previews_then_writes(ehr: Ehr, tmp_path: Path, jwks_file: Path) -> None:
    settings = load_settings(env_for(ehr, tmp_path, jwks_file))
    app = create_app(settings, start_worker=False)
    ledger = app.extensions["theracharge"].store._ledger
    assert ledger is not None
    ledger.interval = 60  # only an answer that waits for its row puts it on the table now
    elsewhere = Store(settings.service.database_url)  # another worker's view of the ledger
    client = app.test_client()
    auth = {"Authorization": "Bearer api-token"}
    preview = client.get("/api/v1/encounters/enc-0004/charges", headers=auth)
    assert preview.status_code == 200
    assert preview.json["dry_run"] is True
    assert ours(ehr, app.extensions["theracharge"].settings) == {}
    written = client.post("/api/v1/encounters/enc-0004/charges", headers=auth)
    assert written.json["written"]["created"] == [ln["key"] for ln in preview.json["lines"]]
    assert set(ours(ehr, app.extensions["theracharge"].settings)) == {
        ln["key"] for ln in preview.json["lines"]
    }
    (latest,) = elsewhere.runs("enc-0004")  # the preview left no row (not kept by default)
    assert latest.outcome == "written"
    shared = ("created", "updated", "unchanged", "entered_in_error", "corrections_needed")
    assert latest.written == {k: written.json["written"][k] for k in shared}  # one shape
    missing = client.get("/api/v1/encounters/nope/charges", headers=auth)
    assert missing.status_code == 404


def test_a_page_rerun_writes_and_the_next_page_shows_it_from_any_worker(
    ehr: Ehr, tmp_path: Path, jwks_file: Path
) -> None:
    settings = load_settings(env_for(ehr, tmp_path, jwks_file))
    app = create_app(settings, start_worker=False)
    ledger = app.extensions["theracharge"].store._ledger
    assert ledger is not None
    ledger.interval = 60  # only a re-run that waits for its row puts it on the table now
    elsewhere = Store(settings.service.database_url)  # the worker serving the redirect
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(who="bea", role="billing", csrf="form-token")
    answer = client.post("/decisions/enc-0005/rerun", data={"csrf": "form-token"})
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/decisions/enc-0005")
    assert [(r.trigger, r.outcome) for r in elsewhere.runs("enc-0005")] == [("page:bea", "written")]
    assert any(k.startswith("Patient/pat-0005/") for k in ours(ehr, settings))
    page = client.get("/decisions/enc-0005")
    assert "Re-run done: written." in page.get_data(as_text=True)
    refused = client.post("/decisions/enc-0005/rerun", data={"csrf": "guess"})
    assert refused.status_code == 400  # a form from elsewhere changes nothing
    assert len(elsewhere.runs("enc-0005")) == 1


def test_a_hook_call_on_a_medicare_day_costs_one_ehr_read(
    ehr: Ehr, tmp_path: Path, jwks_file: Path, sign
) -> None:
    """With the prefetch naming the payer and the performers, the day's search, the patient's
    history (the episode rules) and the performers' other services (one-on-one) go to the EHR
    in one batch; then one write. Called again, the read alone (nothing changed)."""
    coverage = requests.get(f"{ehr.base_url}/Coverage/cov-0005", timeout=10).json()
    coverage["payor"] = [{"reference": "Organization/payer-medicare-b"}]
    requests.put(f"{ehr.base_url}/Coverage/cov-0005", json=coverage, timeout=10)
    app = create_app(
        load_settings(env_for(ehr, tmp_path, jwks_file, THERACHARGE_WRITE_MODE="direct")),
        start_worker=False,
    )
    state = app.extensions["theracharge"]
    client = state.gatherer().client
    state.gatherer().supported()  # the CapabilityStatement: once per process, not per call
    body = {
        "hook": "encounter-discharge",
        "fhirServer": ehr.base_url,
        "context": {"userId": "PractitionerRole/x", "patientId": "pat-0005"},
        "prefetch": prefetch_from(FhirClient(ehr.base_url), "enc-0005"),
    }
    body["context"]["encounterId"] = "enc-0005"
    sent = []
    for _ in range(2):
        before = client.requests_sent
        answer = app.test_client().post(
            "/cds-services/therapy-charges",
            json={**body, "hookInstance": str(uuid.uuid4())},
            headers={"Authorization": f"Bearer {sign()}"},
        )
        assert answer.status_code == 200, answer.json
        sent.append(client.requests_sent - before)
    runs = state.store.runs("enc-0005")
    assert [r.outcome for r in runs] == ["unchanged", "written"]  # newest first
    assert "medicare-part-b" in str(runs[0].report)  # a payer of the episode rules
    assert sent == [2, 1]  # the day with its history and colleagues; the write once
