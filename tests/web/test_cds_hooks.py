"""CDS Hooks 2.0: discovery, the hook call and feedback — shapes, negative paths, trust."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import rsa

from plugin.web.cds_auth import JwksSource
from tests import builders
from tests.conftest import ISSUER, KID, SERVICE_URL
from tests.helpers.hooks import call, hook_body, serve_the_day

SPEC = Path(__file__).resolve().parents[1] / "fixtures" / "spec" / "cds-hooks"


def test_discovery_has_the_spec_shape_and_prefetch_templates(make_app) -> None:
    body = make_app().test_client().get("/cds-services").json
    spec = json.loads((SPEC / "discovery-response.json").read_text())
    assert set(body) == set(spec)
    (service,) = body["services"]
    assert {"hook", "id", "description", "title", "prefetch"} <= set(service)
    assert (service["hook"], service["id"]) == ("encounter-discharge", "therapy-charges")
    assert "{{context.encounterId}}" in service["prefetch"]["encounter"]
    assert "{{context.patientId}}" in service["prefetch"]["coverage"]


def test_the_spec_example_token_verifies_against_its_published_jwks() -> None:
    token = (SPEC / "jwt-example-token.txt").read_text().strip()
    key = JwksSource(str(SPEC / "jwks-public.json")).key("example-kid")
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["ES384"],
        options={"verify_exp": False},
        audience="https://cds.example.org/cds-services/some-service",
    )
    assert claims["iss"] == "https://fhir-ehr.example.com/"


def _spec_card(card: dict[str, Any]) -> None:
    assert 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"]


def test_a_signed_call_in_preview_answers_cards_and_writes_nothing(make_app, sign) -> None:
    answer = call(make_app(), hook_body(), sign())
    assert answer.status_code == 200
    cards = answer.json["cards"]
    for card in cards:
        _spec_card(card)
    assert cards[0]["indicator"] == "info"
    assert cards[0]["summary"].startswith("Charges (CMS): ")
    assert any(c["summary"].startswith("97112 held") for c in cards)
    assert "systemActions" not in answer.json


def test_system_actions_mode_hands_the_writes_to_the_ehr(make_app, sign) -> None:
    answer = call(make_app(THERACHARGE_WRITE_MODE="system-actions"), hook_body(), sign())
    actions = answer.json["systemActions"]
    kinds = [(a["type"], a["resource"]["resourceType"]) for a in actions]
    assert kinds == [("create", "ChargeItem")] * 3 + [("update", "Provenance")]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hook": None}, "hook"),
        ({"hookInstance": None}, "hookInstance"),
        ({"context": None}, "context"),
        ({"context": {"userId": "u", "patientId": "p1"}}, "context.encounterId"),
        ({"context": {"userId": "u", "encounterId": "e1"}}, "context.patientId"),
        ({"hook": "patient-view"}, "hook"),
        ({"fhirServer": "not a url"}, "fhirServer"),
        ({"fhirAuthorization": {"access_token": "x"}}, "fhirAuthorization.token_type"),
        ({"prefetch": ["Encounter/e1"]}, "prefetch"),
    ],
)
def test_a_malformed_call_is_400_naming_the_field(
    make_app, sign, change: dict[str, Any], field: str
) -> None:
    body = hook_body()
    for key, value in change.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    answer = call(make_app(), body, sign())
    assert answer.status_code == 400
    assert field in answer.json["fields"]


_VARIANTS: list[dict[str, Any]] = [
    {},
    {"extension": {"x": 1}, "context": {"userId": "u", "patientId": "p", "encounterId": "e.1-A"}},
    {"fhirServer": None, "fhirAuthorization": None},
    {"prefetch": {}},
    {"prefetch": None},
    {"prefetch": "x"},
    {"hook": "patient-view"},
    {"hookInstance": ""},
    {"hookInstance": "i" * 200},
    {"hookInstance": "i" * 201},
    {"hookInstance": 7},
    {"context": []},
    {"context": {"userId": "", "patientId": "p", "encounterId": "e1"}},
    {"context": {"userId": "u", "patientId": 3, "encounterId": "e1"}},
    {"context": {"userId": "u", "patientId": "p", "encounterId": "e/1"}},
    {"context": {"userId": "u", "patientId": "p", "encounterId": "e" * 65}},
    {"context": {"userId": "u", "patientId": "p", "encounterId": "e1\n"}},
    {"fhirServer": "https://ehr.example.org/fhir"},
    {"fhirAuthorization": {"access_token": "x"}},
]


@pytest.mark.parametrize("change", _VARIANTS)
def test_the_hand_checked_call_loads_as_the_schema_loads_it(change: dict[str, Any]) -> None:
    """The common call skips the marshmallow schema (plain_hook_request); whatever it accepts
    must load to exactly what the schema gives, and anything it is unsure of goes to the
    schema (which loads it or names the field)."""
    from marshmallow import ValidationError

    from plugin.schemas.cds import HookRequestSchema, plain_hook_request

    body = {**hook_body(), **change}
    plain = plain_hook_request(body)
    try:
        loaded = HookRequestSchema().load(body)
    except ValidationError:
        assert plain is None
        return
    if plain is not None:
        assert plain == loaded
    else:  # only what the hand check leaves to the schema on purpose
        assert body.get("fhirServer") or body.get("fhirAuthorization")


def test_the_common_call_is_checked_by_hand() -> None:
    from plugin.schemas.cds import plain_hook_request

    assert plain_hook_request(hook_body()) is not None


def test_an_unknown_service_is_404(make_app, sign) -> None:
    assert call(make_app(), hook_body(), sign(), "/cds-services/other").status_code == 404


def test_a_body_that_is_not_json_is_400(make_app, sign) -> None:
    answer = (
        make_app()
        .test_client()
        .post(
            "/cds-services/therapy-charges",
            data="nope",
            headers={"Authorization": f"Bearer {sign()}"},
        )
    )
    assert answer.status_code == 400


def _hs256_with_public_key(jwks_file: Path) -> str:
    public = json.loads(jwks_file.read_text())["keys"][0]
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": SERVICE_URL, "iat": now, "exp": now + 300, "jti": "x"}
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    body = b64(json.dumps(claims).encode())
    secret = json.dumps(public).encode()
    signature = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{signature}"


def _alg_none() -> str:
    now = int(time.time())
    return jwt.encode(
        {"iss": ISSUER, "aud": SERVICE_URL, "iat": now, "exp": now + 300, "jti": "n"},
        key=None,
        algorithm="none",
        headers={"kid": KID},
    )


@pytest.mark.parametrize(
    "case",
    [
        "none",
        "garbage",
        "expired",
        "wrong-aud",
        "unknown-kid",
        "alg-none",
        "hs256-public-key",
        "other-issuer",
        "no-jti",
        "rsa-key-for-es-kid",
        "future-iat",
    ],
)
def test_untrusted_calls_get_401_with_no_detail(make_app, sign, jwks_file, case: str) -> None:
    now = int(time.time())
    token = {
        "none": None,
        "garbage": "abc.def.ghi",
        "expired": sign(exp=now - 3600, iat=now - 4000),
        "wrong-aud": sign(aud="http://localhost/cds-services/other"),
        "unknown-kid": sign(kid="someone-else"),
        "alg-none": _alg_none(),
        "hs256-public-key": _hs256_with_public_key(jwks_file),
        "other-issuer": sign(iss="https://evil.example.org"),
        "no-jti": _without_jti(sign),
        "rsa-key-for-es-kid": jwt.encode(
            {"iss": ISSUER, "aud": SERVICE_URL, "iat": now, "exp": now + 60, "jti": "r"},
            rsa.generate_private_key(65537, 2048),
            algorithm="RS384",
            headers={"kid": KID},
        ),
        "future-iat": sign(iat=now + 3600, exp=now + 7200),
    }[case]
    answer = call(make_app(), hook_body(), token)
    assert answer.status_code == 401
    assert answer.json == {"error": "unauthorized"}


def _without_jti(sign) -> str:
    token = sign(jti="placeholder")
    _, payload, _ = token.split(".")
    import base64

    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    del claims["jti"]
    return jwt.encode(claims, _KEYHOLDER["key"], algorithm="ES384", headers={"kid": KID})


_KEYHOLDER: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _remember_key(ehr_key) -> None:
    _KEYHOLDER["key"] = ehr_key


def test_a_replayed_token_is_refused(make_app, sign) -> None:
    app = make_app()
    token = sign()
    assert call(app, hook_body(), token).status_code == 200
    assert call(app, hook_body(), token).status_code == 401


def test_auth_can_only_be_switched_off_explicitly(make_app, caplog) -> None:
    app = make_app(THERACHARGE_CDS_AUTH="disabled")
    assert call(app, hook_body()).status_code == 200
    assert "NOT authenticated" in caplog.text


@responses.activate
def test_a_fhir_server_not_on_the_allow_list_is_never_called(make_app, sign) -> None:
    body = hook_body(prefetch={}, fhirServer="https://elsewhere.example.org/fhir")
    answer = call(make_app(), body, sign())
    assert answer.status_code == 412
    assert answer.json["resourceType"] == "OperationOutcome"
    assert "no allowed fhirServer" in answer.json["issue"][0]["diagnostics"]
    assert len(responses.calls) == 0


@responses.activate
def test_prefetch_missing_and_the_ehr_down_is_412(make_app, sign) -> None:
    base = "https://ehr.example.org/fhir"
    responses.get(f"{base}/metadata", status=503)
    app = make_app(THERACHARGE_FHIR_BASE_URL=base, THERACHARGE_FHIR_RETRY_SECONDS="0.5")
    answer = call(app, hook_body(prefetch={"encounter": None}, fhirServer=base), sign())
    assert answer.status_code == 412
    assert "fetching the encounter failed" in answer.json["issue"][0]["diagnostics"]


@responses.activate
def test_the_ehr_failing_during_the_write_is_a_warning_card(make_app, sign) -> None:
    base = "https://ehr.example.org/fhir"
    responses.post(
        base,
        status=500,
        json={
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "error", "code": "exception", "diagnostics": "database is locked"}
            ],
        },
    )
    serve_the_day(base, hook_body()["prefetch"])
    app = make_app(
        THERACHARGE_FHIR_BASE_URL=base,
        THERACHARGE_WRITE_MODE="direct",
        THERACHARGE_FHIR_RETRY_SECONDS="0.5",
    )
    answer = call(app, hook_body(fhirServer=base), sign())
    assert answer.status_code == 200
    failed = [c for c in answer.json["cards"] if "NOT written" in c["summary"]]
    assert len(failed) == 1
    assert failed[0]["indicator"] == "warning"
    assert "database is locked" in failed[0]["detail"]
    runs = app.extensions["theracharge"].store.runs("e1")
    assert runs[0].outcome == "failed"
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'theracharge_ehr_errors_total{kind="write"}' in metrics


def test_feedback_is_recorded_in_the_audit_log(make_app, sign) -> None:
    app = make_app()
    body = json.loads((SPEC / "feedback-overridden-with-reason.json").read_text())
    answer = call(
        app,
        body,
        sign(aud="http://localhost/cds-services/therapy-charges/feedback"),
        "/cds-services/therapy-charges/feedback",
    )
    assert answer.status_code == 200
    (entry,) = app.extensions["theracharge"].store.audit_entries(action="card-overridden")
    assert (entry.action, entry.object_id) == (
        "card-overridden",
        "9368d37b-283f-44a0-93ea-547cebab93ed",
    )
    assert entry.detail["overrideReason"]["reason"]["code"] == "d7ecf885"


@pytest.mark.parametrize(
    "prefetch",
    [
        {"encounter": None, "procedures": None},
        {"encounter": {"resourceType": "Encounter", "id": "someone-else"}, "procedures": None},
        {"encounter": {"resourceType": "OperationOutcome"}, "procedures": None},
    ],
)
def test_without_the_visit_in_prefetch_or_a_server_it_is_412(make_app, sign, prefetch) -> None:
    answer = call(make_app(), hook_body(prefetch=prefetch), sign())
    assert answer.status_code == 412
    assert answer.json["resourceType"] == "OperationOutcome"


@responses.activate
def test_direct_mode_reads_the_patients_day_and_writes_it(make_app, sign) -> None:
    base = "https://ehr.example.org/fhir"
    body = hook_body(fhirServer=base)
    del body["prefetch"]["chargeItems"]
    serve_the_day(base, body["prefetch"])
    responses.post(
        base, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []}
    )
    app = make_app(THERACHARGE_FHIR_BASE_URL=base, THERACHARGE_WRITE_MODE="direct")
    answer = call(app, body, sign())
    assert answer.status_code == 200
    searches = [c.request.url for c in responses.calls if "/metadata" not in c.request.url]
    assert searches[0].startswith(f"{base}/Encounter?subject=Patient%2F")
    assert "date=ge2026-11-01&date=le2026-11-03" in searches[0]
    assert "_revinclude=ChargeItem:context" in searches[0]
    assert any(
        c["summary"].startswith("ChargeItems written: 3 created") for c in answer.json["cards"]
    )
    assert not any("alone" in c["summary"] for c in answer.json["cards"])


def test_with_no_server_to_ask_the_visit_is_decided_alone_and_the_card_says_so(
    make_app, sign
) -> None:
    answer = call(make_app(), hook_body(), sign())
    (alone,) = [c for c in answer.json["cards"] if "alone" in c["summary"]]
    assert alone["indicator"] == "info"
    assert "units may change" in alone["detail"]


@responses.activate
def test_hook_calls_share_the_processs_ehr_connection(make_app, sign) -> None:
    base = "https://ehr.example.org/fhir"
    body = hook_body(fhirServer=base)
    serve_the_day(base, body["prefetch"])
    app = make_app(THERACHARGE_FHIR_BASE_URL=base)
    for _ in range(3):
        body["hookInstance"] = str(uuid.uuid4())
        assert call(app, body, sign()).status_code == 200
    urls = [c.request.url for c in responses.calls]
    assert sum(u.endswith("/metadata") for u in urls) == 1  # capabilities learned once
    assert sum("/Encounter?" in u and "_revinclude" in u for u in urls) == 3  # a day search each
    # Medicare applies the episode rules: each call also reads the patient's earlier visits
    assert sum("/Encounter?" in u and "status=finished" in u for u in urls) == 3


@responses.activate
def test_after_a_version_conflict_the_cards_and_the_ledger_show_the_run_that_was_written(
    make_app, sign
) -> None:
    base = "https://ehr.example.org/fhir"
    body = hook_body(fhirServer=base)
    serve_the_day(base, body["prefetch"])  # the first read
    changed = builders.procedure("p4", "97530", "2026-11-02T10:00:00-05:00", 20)
    serve_the_day(base, body["prefetch"], changed)  # read again: someone added a procedure
    responses.get(f"{base}/Encounter/e1", json=body["prefetch"]["encounter"])
    conflict = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "conflict", "diagnostics": "version conflict"}],
    }
    responses.post(base, status=412, json=conflict)
    responses.post(
        base, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []}
    )
    app = make_app(THERACHARGE_FHIR_BASE_URL=base, THERACHARGE_WRITE_MODE="direct")
    answer = call(app, body, sign())
    assert answer.status_code == 200
    summary = answer.json["cards"][0]
    assert summary["summary"].endswith("4 held")  # the second decision, the one written
    assert "97530" in summary["detail"]
    (run,) = app.extensions["theracharge"].store.runs("e1")
    assert "97530" in {line["code"] for line in run.lines}
    assert any(key.endswith("/97530") for key in run.written["created"])


def test_every_card_links_to_the_visits_decision_page(make_app, sign) -> None:
    answer = call(make_app(), hook_body(), sign())
    assert answer.status_code == 200
    cards = answer.json["cards"]
    assert cards
    for card in cards:
        assert card["links"] == [
            {
                "label": "Open this visit's charges and holds in TheraCharge",
                "url": "http://localhost/decisions/e1",
                "type": "absolute",
            }
        ]


def test_where_the_ehr_registered_us_as_a_smart_app_cards_carry_a_smart_launch(
    make_app, sign
) -> None:
    answer = call(make_app(THERACHARGE_SMART_APP_CLIENT_ID="theracharge-app"), hook_body(), sign())
    assert answer.status_code == 200
    for card in answer.json["cards"]:
        smart = [link for link in card["links"] if link["type"] == "smart"]
        assert smart == [
            {
                "label": "Open in TheraCharge (SMART app)",
                "url": "http://localhost/smart/launch",
                "type": "smart",
                "appContext": "e1",
            }
        ]
