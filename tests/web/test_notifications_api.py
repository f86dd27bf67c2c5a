"""Notifications are authenticated, recorded durably and deduplicated; the API needs a token."""

from __future__ import annotations

from typing import Any

from plugin.config.tokens import token_hash
from tests import builders

SECRET = "s3cret-hook"
HEADER = {"X-TheraCharge-Secret": SECRET}


def app_with(make_app, **env: str) -> Any:
    return make_app(THERACHARGE_NOTIFICATION_SECRET=SECRET, **env)


def finished(eid: str = "e1", version: str = "3") -> dict[str, Any]:
    return {**builders.encounter(eid), "meta": {"versionId": version}}


def test_a_notification_without_the_secret_is_refused(make_app) -> None:
    client = app_with(make_app).test_client()
    assert client.put("/notifications/fhir/Encounter/e1", json=finished()).status_code == 401
    wrong = {"X-TheraCharge-Secret": "guess"}
    assert (
        client.put("/notifications/fhir/Encounter/e1", json=finished(), headers=wrong).status_code
        == 401
    )


def test_each_encounter_version_is_recorded_once(make_app) -> None:
    app = app_with(make_app)
    client = app.test_client()
    first = client.put(
        "/notifications/fhir/Encounter/e1", json=finished(version="3"), headers=HEADER
    )
    again = client.put(
        "/notifications/fhir/Encounter/e1", json=finished(version="3"), headers=HEADER
    )
    newer = client.put(
        "/notifications/fhir/Encounter/e1", json=finished(version="4"), headers=HEADER
    )
    assert [r.json["queued"] for r in (first, again, newer)] == [True, False, True]
    rows = app.extensions["theracharge"].store.notifications()
    assert [(n.encounter_id, n.version, n.status) for n in rows] == [
        ("e1", "3", "pending"),
        ("e1", "4", "pending"),
    ]


def test_an_unfinished_encounter_is_acknowledged_and_not_queued(make_app) -> None:
    app = app_with(make_app)
    body = {**finished(), "status": "in-progress"}
    answer = app.test_client().put("/notifications/fhir/Encounter/e1", json=body, headers=HEADER)
    assert answer.json == {"queued": False, "reason": "encounter not finished"}
    assert app.extensions["theracharge"].store.notifications() == []


def test_a_body_that_is_not_an_encounter_is_400(make_app) -> None:
    client = app_with(make_app).test_client()
    answer = client.put(
        "/notifications/fhir/Encounter/e1", json={"resourceType": "Patient"}, headers=HEADER
    )
    assert answer.status_code == 400
    assert "Encounter" in answer.json["message"]


def test_an_empty_ping_is_acknowledged(make_app) -> None:
    answer = app_with(make_app).test_client().post("/notifications/fhir", data=b"", headers=HEADER)
    assert (answer.status_code, answer.json) == (200, {"queued": 0})


def test_backport_bundles_id_only_and_full_resource_are_queued(make_app) -> None:
    app = app_with(make_app)
    status = {"resourceType": "Parameters", "id": "status"}
    id_only = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": status},
            {"fullUrl": "https://ehr.example.org/fhir/Encounter/e7/_history/2"},
        ],
    }
    full = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {"resource": status},
            {"resource": finished("e8", "5")},
        ],
    }
    client = app.test_client()
    assert client.post("/notifications/fhir", json=id_only, headers=HEADER).json == {"queued": 1}
    assert client.post("/notifications/fhir", json=full, headers=HEADER).json == {"queued": 1}
    rows = app.extensions["theracharge"].store.notifications()
    assert [(n.encounter_id, n.version) for n in rows] == [("e7", "2"), ("e8", "5")]


def test_the_charges_api_needs_a_known_token(make_app) -> None:
    tokens = f"billing=sha256:{token_hash('right-token')}"
    client = make_app(THERACHARGE_API_TOKENS=tokens).test_client()
    url = "/api/v1/encounters/e1/charges"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get(url, headers={"Authorization": "Bearer right-token"})
    assert answer.status_code == 503  # the token is good; no EHR is configured here
    assert "THERACHARGE_FHIR_BASE_URL" in answer.json["message"]
    bad = client.post(f"{url}?dry_run=maybe", headers={"Authorization": "Bearer right-token"})
    assert (bad.status_code, bad.json["fields"]) == (400, {"dry_run": "expected true or false"})


def test_health_readiness_metrics_and_openapi(make_app) -> None:
    client = make_app().test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json["checks"]) == (
        200,
        {"settings": "ok", "database": "ok", "notification_worker": "ok"},
    )
    client.get("/cds-services")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'theracharge_requests_total{endpoint="/cds-services",status="200"}' in metrics
    paths = client.get("/openapi.json").json["paths"]
    assert {
        "/cds-services",
        "/cds-services/{service_id}",
        "/api/v1/encounters/{encounter_id}/charges",
        "/notifications/fhir",
        "/notifications/fhir/Encounter/{encounter_id}",
        "/readyz",
    } <= set(paths)


def test_readiness_fails_when_the_ehr_is_unreachable(make_app) -> None:
    app = make_app(
        THERACHARGE_FHIR_BASE_URL="http://127.0.0.1:9/fhir",
        THERACHARGE_FHIR_RETRY_SECONDS="0.2",
        THERACHARGE_FHIR_CONNECT_TIMEOUT="0.2",
    )
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["ehr"].startswith("failed")
