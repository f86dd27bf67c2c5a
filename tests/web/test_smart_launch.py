"""The card's SMART app link: an EHR launch signs the clinician in and lands on the visit's
decision page (SMART App Launch 2.x, EHR launch, PKCE)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlparse

import responses

ISS = "https://ehr.example.org/fhir"
AUTHORIZE = "https://ehr.example.org/oauth/authorize"
TOKEN = "https://ehr.example.org/oauth/token"


def _app(make_app: Any) -> Any:
    return make_app(
        THERACHARGE_FHIR_BASE_URL=ISS,
        THERACHARGE_FHIR_TOKEN="sandbox",
        THERACHARGE_SMART_APP_CLIENT_ID="theracharge-app",
        THERACHARGE_CDS_AUTH="disabled",
        THERACHARGE_LEDGER_KEEP_PREVIEW="true",
    )


def _discovery() -> None:
    responses.get(
        f"{ISS}/.well-known/smart-configuration",
        json={"authorization_endpoint": AUTHORIZE, "token_endpoint": TOKEN},
    )


@responses.activate
def test_a_launch_goes_to_the_ehrs_authorize_endpoint_and_back_to_the_decision(
    make_app: Any,
) -> None:
    _discovery()
    responses.post(
        TOKEN,
        json={"access_token": "a-token", "token_type": "Bearer", "encounter": "enc-9",
              "patient": "pat-9", "fhirUser": "Practitioner/pt1"},
    )  # fmt: skip
    client = _app(make_app).test_client()
    started = client.get(f"/smart/launch?iss={ISS}&launch=xyz")
    assert started.status_code == 302
    target = urlparse(started.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert f"{target.scheme}://{target.netloc}{target.path}" == AUTHORIZE
    assert query["client_id"] == "theracharge-app"
    assert query["launch"] == "xyz"
    assert query["aud"] == ISS
    assert query["redirect_uri"] == "http://localhost/smart/callback"
    assert query["code_challenge_method"] == "S256"
    assert "launch" in query["scope"].split()
    back = client.get(f"/smart/callback?code=the-code&state={query['state']}")
    assert back.status_code == 302
    assert back.headers["Location"].endswith("/decisions/enc-9")
    exchanged = parse_qs(responses.calls[-1].request.body)
    verifier = exchanged["code_verifier"][0]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert digest.decode() == query["code_challenge"]  # PKCE: the verifier matches
    assert exchanged["code"] == ["the-code"]
    with client.session_transaction() as session:
        assert (session["who"], session["role"]) == ("smart:Practitioner/pt1", "viewer")
        assert "smart" not in session  # the state is used once


@responses.activate
def test_a_callback_with_another_state_or_an_unknown_iss_is_refused(make_app: Any) -> None:
    _discovery()
    client = _app(make_app).test_client()
    unknown = client.get("/smart/launch?iss=https://elsewhere.example/fhir&launch=xyz")
    assert unknown.status_code == 400
    assert "not a FHIR server TheraCharge is configured for" in unknown.get_data(as_text=True)
    client.get(f"/smart/launch?iss={ISS}&launch=xyz")
    forged = client.get("/smart/callback?code=c&state=not-ours")
    assert forged.status_code == 400
    with client.session_transaction() as session:
        assert "who" not in session
    assert not [c for c in responses.calls if c.request.method == "POST"]  # no token asked


def test_without_a_smart_client_id_there_is_no_launch(make_app: Any) -> None:
    client = make_app().test_client()
    assert client.get(f"/smart/launch?iss={ISS}&launch=xyz").status_code == 404
