"""Hostile values each get a 4xx naming what is wrong, or a finding on the visit; never a 500."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import responses

from plugin.config.tokens import token_hash
from plugin.schemas.errors import ConfigError
from tests import builders
from tests.helpers.hooks import call, hook_body, prefetch_of

TOKENS = f"ann:admin=sha256:{token_hash('admin-token')}"
ADMIN = {"Authorization": "Bearer admin-token"}
SECRET = {"X-TheraCharge-Secret": "s3cret"}


def _visit_on(day: str) -> dict[str, Any]:
    start = f"{day}T09:00:00-05:00"
    record = builders.complete_record(
        builders.procedure("p1", start=start, minutes=30),
        visit=builders.encounter(start=f"{day}T08:00:00-05:00"),
    )
    return hook_body(prefetch_of(record))


@pytest.mark.parametrize("exp", [10**12, 2**63, 2**70])
def test_a_token_claiming_to_live_for_ages_is_refused_as_untrusted(make_app, sign, exp) -> None:
    answer = call(make_app(), hook_body(), sign(exp=exp))
    assert answer.status_code == 401
    assert answer.json == {"error": "unauthorized"}


def test_a_token_minted_for_another_host_is_refused_whatever_the_host_header(
    make_app, sign
) -> None:
    app = make_app(THERACHARGE_PUBLIC_URL="https://theracharge.example.org")
    forged = sign(aud="http://evil.example/cds-services/therapy-charges")
    answer = app.test_client().post(
        "/cds-services/therapy-charges",
        json=hook_body(),
        headers={"Authorization": f"Bearer {forged}", "Host": "evil.example"},
    )
    assert answer.status_code == 401
    good = sign(aud="https://theracharge.example.org/cds-services/therapy-charges")
    assert call(app, hook_body(), good).status_code == 200


def test_outside_dev_the_service_will_not_start_without_its_public_url(make_app) -> None:
    with pytest.raises(ConfigError, match="THERACHARGE_PUBLIC_URL"):
        make_app(THERACHARGE_PUBLIC_URL="")


@pytest.mark.parametrize("token", ["tök€n", "abc def", "abc\r\nX-Injected: 1", "abc\n"])
def test_an_access_token_that_no_header_can_carry_is_400_naming_it(make_app, sign, token) -> None:
    app = make_app(THERACHARGE_FHIR_SERVER_ALLOWLIST="https://other.example/fhir")
    auth = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
    }
    body = hook_body(fhirServer="https://other.example/fhir", fhirAuthorization=auth)
    with responses.RequestsMock():  # nothing may be fetched with it
        answer = call(app, body, sign())
    assert answer.status_code == 400
    assert "fhirAuthorization.access_token" in answer.json["fields"]


def test_an_encounter_in_year_1_is_held_as_no_rules_in_force_not_a_crash(make_app, sign) -> None:
    answer = call(make_app(), _visit_on("0001-01-01"), sign())
    cards = answer.json["cards"]
    assert answer.status_code == 200
    assert any("No unit rules in force on 0001-01-01" in c.get("detail", "") for c in cards)


@pytest.mark.parametrize(("value", "unit"), [(10**30, "min"), (1e308, "h"), (24 * 60 + 1, "min")])
def test_a_minutes_extension_past_a_day_is_unreadable_time_and_held(
    make_app, sign, value, unit
) -> None:
    minutes = {"url": builders.MINUTES_URL, "valueDuration": {"value": value, "code": unit}}
    proc = builders.procedure("p1", start=None, minutes=None, extension=[minutes])
    body = hook_body(prefetch_of(builders.complete_record(proc)))
    answer = (
        make_app()
        .test_client()
        .post(
            "/cds-services/therapy-charges",
            data=json.dumps(body),  # the standard library writes integers of any size
            content_type="application/json",
            headers={"Authorization": f"Bearer {sign()}"},
        )
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    details = " ".join(c.get("detail", "") for c in answer.json["cards"])
    assert "more than the 1440 minutes of a day" in details


def test_try_with_a_procedure_that_is_not_an_object_is_422_naming_it(make_app) -> None:
    client = make_app(THERACHARGE_API_TOKENS=TOKENS).test_client()
    for procedure in (["not", "an", "object"], "97110", 5):
        answer = client.post(
            "/admin/api/v1/mappings/try", json={"procedure": procedure}, headers=ADMIN
        )
        assert answer.status_code == 422
        assert "procedure" in answer.json["fields"]
    coding_list = {"procedure": {"code": {"coding": "97110"}}}
    answer = client.post("/admin/api/v1/mappings/try", json=coding_list, headers=ADMIN)
    assert answer.status_code == 422


def test_notifications_with_a_meta_list_or_a_numeric_entry_are_400_naming_it(make_app) -> None:
    client = make_app(THERACHARGE_NOTIFICATION_SECRET="s3cret").test_client()
    encounter = {**builders.encounter("e1"), "meta": ["versionId", "3"]}
    answer = client.put("/notifications/fhir/Encounter/e1", json=encounter, headers=SECRET)
    assert (answer.status_code, answer.json["fields"]) == (400, {"meta": "object"})
    bundle = {"resourceType": "Bundle", "type": "history", "entry": 5}
    answer = client.post("/notifications/fhir", json=bundle, headers=SECRET)
    assert (answer.status_code, answer.json["fields"]) == (400, {"entry": "list"})
    listed = {"resourceType": "Bundle", "type": "history", "entry": [{"resource": encounter}]}
    answer = client.post("/notifications/fhir", json=listed, headers=SECRET)
    assert answer.status_code == 400


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "/\t/evil.example",
        "/\\evil.example",
        "/worklist\r\nSet-Cookie: x=1",
        "https://evil.example/",
        "javascript:alert(1)",
    ],
)
def test_sign_in_never_sends_the_browser_off_site(make_app, target) -> None:
    client = make_app(THERACHARGE_API_TOKENS=TOKENS).test_client()
    page = client.get("/login")
    assert page.status_code == 200
    with client.session_transaction() as session:
        csrf = session["csrf"]
    answer = client.post("/login", data={"token": "admin-token", "next": target, "csrf": csrf})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/worklist"


def test_sign_in_keeps_a_same_site_next(make_app) -> None:
    client = make_app(THERACHARGE_API_TOKENS=TOKENS).test_client()
    client.get("/login")
    with client.session_transaction() as session:
        csrf = session["csrf"]
    answer = client.post(
        "/login", data={"token": "admin-token", "next": "/decisions/e1?x=1", "csrf": csrf}
    )
    assert answer.headers["Location"] == "/decisions/e1?x=1"


def test_a_body_over_the_limit_is_413_before_it_is_read(make_app, sign) -> None:
    app = make_app(THERACHARGE_MAX_REQUEST_BYTES="20000", THERACHARGE_API_TOKENS=TOKENS)
    client = app.test_client()
    big = hook_body(padding="x" * 30_000)
    answer = client.post(
        "/cds-services/therapy-charges", json=big, headers={"Authorization": f"Bearer {sign()}"}
    )
    assert answer.status_code == 413
    assert answer.json["error"] == "request-entity-too-large"
    form = client.post("/login", data={"token": "x" * 30_000})
    assert form.status_code == 413
    small = client.post(
        "/cds-services/therapy-charges",
        json=hook_body(),
        headers={"Authorization": f"Bearer {sign()}"},
    )
    assert small.status_code == 200


def test_a_body_without_a_length_is_cut_at_the_limit(make_app, sign) -> None:
    """Chunked: no Content-Length to check first, so reading stops at the limit (gunicorn marks
    such a body wsgi.input_terminated)."""
    app = make_app(THERACHARGE_MAX_REQUEST_BYTES="20000")
    body = b'{"hook": "encounter-discharge", "padding": "' + b"x" * 100_000 + b'"}'
    answer = app.test_client().post(
        "/cds-services/therapy-charges",
        input_stream=io.BytesIO(body),
        headers={"Authorization": f"Bearer {sign()}", "Content-Type": "application/json"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert answer.status_code == 413


def test_a_resource_of_the_wrong_shape_is_422_naming_it_and_its_element(make_app, sign) -> None:
    record = builders.complete_record(builders.procedure("p1"))
    record[0]["diagnosis"] = True  # the Encounter's diagnosis: a list in FHIR R4
    answer = call(make_app(), hook_body(prefetch_of(record)), sign())
    assert answer.status_code == 422
    assert answer.json["message"].startswith("Encounter/e1 is not valid FHIR R4: diagnosis")
    assert list(answer.json["fields"]) == ["Encounter/e1"]


def test_a_file_with_a_resource_of_the_wrong_shape_exits_2_naming_it(tmp_path, capsys) -> None:
    from plugin.commands import main as cli

    record = builders.complete_record(builders.procedure("p1"))
    record[4]["bodySite"] = True  # a list of CodeableConcepts in FHIR R4
    path = tmp_path / "visit.json"
    entries = [{"resource": r} for r in record]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    out = tmp_path / "out.json"
    assert cli.main(["process", "--bundle", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Procedure/p1 is not valid FHIR R4: bodySite" in err
    assert not out.exists()


def test_a_prefetched_bundle_whose_entry_is_not_a_list_is_400_naming_it(make_app, sign) -> None:
    body = hook_body()
    body["prefetch"]["procedures"]["entry"] = 7
    answer = call(make_app(), body, sign())
    assert answer.status_code == 400
    assert answer.json["fields"] == {"prefetch.procedures.entry": "expected a list of entries"}


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("since=yesterday", "since: expected YYYY-MM-DD"),
        ("until=2026-13-01", "until: expected YYYY-MM-DD"),
        ("since=2026-12-01&until=2026-11-01", "the period must start before it ends"),
    ],
)
def test_a_bad_dashboard_period_is_a_400_page_naming_it(make_app, query, said) -> None:
    client = make_app(THERACHARGE_API_TOKENS=TOKENS).test_client()
    with client.session_transaction() as session:
        session["who"], session["role"] = "ann", "admin"
    answer = client.get(f"/dashboard?{query}")
    assert answer.status_code == 400
    assert said in answer.get_data(as_text=True)
    assert answer.mimetype == "text/html"


@pytest.mark.parametrize("issued", [-(10**12), 0, "an hour and two minutes ago"])
def test_a_token_issued_longer_ago_than_any_token_lives_is_refused(make_app, sign, issued) -> None:
    import time

    iat = int(time.time()) - 3720 if isinstance(issued, str) else issued
    answer = call(make_app(), hook_body(), sign(iat=iat))
    assert answer.status_code == 401
    assert answer.json == {"error": "unauthorized"}


def test_a_token_issued_a_minute_ago_is_accepted(make_app, sign) -> None:
    import time

    assert call(make_app(), hook_body(), sign(iat=int(time.time()) - 60)).status_code == 200


@pytest.mark.parametrize(
    "path", ["/api/v1/encounters/e1/charges", "/worklist", "/admin/api/v1/payers", "/healthz"]
)
def test_a_bearer_token_in_the_query_string_is_400_naming_it(make_app, path) -> None:
    app = make_app(THERACHARGE_API_TOKENS=TOKENS)
    answer = app.test_client().get(f"{path}?access_token=admin-token")
    assert answer.status_code == 400
    assert "access_token" in answer.get_data(as_text=True)
    assert "Authorization" in answer.get_data(as_text=True)


def test_credentials_in_urls_never_reach_a_log_line() -> None:
    import logging

    from plugin.web.observability import JsonFormatter

    formatter = JsonFormatter()
    lines = {
        "werkzeug": (
            '%s - - "%s" %s',
            ("127.0.0.1", "GET /smart/callback?code=C0DE&state=ST4TE HTTP/1.1", 302),
        ),
        "gunicorn.access": (
            '%s "%s"',
            ("127.0.0.1", "GET /api/v1/x?a=1&access_token=T0KEN HTTP/1.1"),
        ),
        "gunicorn.error": (
            "Error handling request %s",
            ("/smart/launch?iss=https://ehr&launch=L4UNCH",),
        ),
    }
    for logger, (message, args) in lines.items():
        record = logging.LogRecord(logger, logging.INFO, __file__, 1, message, args, None)
        written = formatter.format(record)
        for secret in ("C0DE", "ST4TE", "T0KEN", "L4UNCH"):
            assert secret not in written, written
        assert "[redacted]" in written
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /worklist?codes=97110", (), None)
    assert "codes=97110" in formatter.format(plain)  # other parameters stay readable
