"""The FHIR client with mocked HTTP: retries, Retry-After, error messages, paging, SMART tokens."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from plugin.gateway.auth import BearerAuth, SmartBackendAuth
from plugin.gateway.client import ClientOptions, FhirClient, ForeignUrlError
from plugin.gateway.errors import FatalFhirError, TemporaryFhirError, VersionConflict

BASE = "https://ehr.example.org/fhir"
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "processing", "diagnostics": "Encounter is locked"}],
}


class Clock:
    """A fake clock whose sleeps move time on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def client(clock: Clock, **options: object) -> FhirClient:
    return FhirClient(BASE, options=ClientOptions(**options), sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]


@responses.activate
def test_temporary_failures_are_retried_with_backoff_until_success() -> None:
    url = f"{BASE}/Encounter/1"
    responses.get(url, status=503, json=OUTCOME)
    responses.get(url, body=requests.ConnectionError("refused"))
    responses.get(url, json={"resourceType": "Encounter", "id": "1"})
    clock = Clock()
    assert client(clock).read("Encounter/1")["id"] == "1"
    assert len(responses.calls) == 3
    assert len(clock.slept) == 2
    assert clock.slept[0] <= 0.5
    assert clock.slept[1] <= 1.0  # jitter under an exponential cap


@responses.activate
def test_retry_after_is_honoured() -> None:
    url = f"{BASE}/metadata"
    responses.get(url, status=429, headers={"Retry-After": "7"})
    responses.get(url, json={"resourceType": "CapabilityStatement"})
    clock = Clock()
    client(clock).capabilities()
    assert clock.slept == [7.0]


@responses.activate
def test_retries_stop_within_the_total_time_and_say_why() -> None:
    url = f"{BASE}/Encounter/1"
    responses.get(url, status=503, json=OUTCOME)
    clock = Clock()
    with pytest.raises(TemporaryFhirError) as error:
        client(clock, retry_total_seconds=5.0).read("Encounter/1")
    assert sum(clock.slept) <= 5.0
    assert error.value.status == 503
    assert "HTTP 503" in str(error.value)
    assert "Encounter is locked" in str(error.value)


@responses.activate
def test_a_server_asking_for_patience_gets_it_for_the_whole_time_budget() -> None:
    """Six 429s with Retry-After: 2 fit in a 30 s budget: the seventh answer is taken."""
    url = f"{BASE}/Encounter/1"
    for _ in range(6):
        responses.get(url, status=429, headers={"Retry-After": "2"})
    responses.get(url, json={"resourceType": "Encounter", "id": "1"})
    clock = Clock()
    assert client(clock, retry_total_seconds=30.0).read("Encounter/1")["id"] == "1"
    assert clock.slept == [2.0] * 6


@responses.activate
def test_a_retry_after_longer_than_the_budget_left_gives_up_at_once() -> None:
    responses.get(f"{BASE}/metadata", status=503, headers={"Retry-After": "60"})
    clock = Clock()
    with pytest.raises(TemporaryFhirError):
        client(clock, retry_total_seconds=30.0).capabilities()
    assert clock.slept == []


@responses.activate
def test_a_next_link_to_another_origin_is_refused_and_never_sent_the_token() -> None:
    responses.get(
        f"{BASE}/Encounter?status=finished",
        json={
            "resourceType": "Bundle",
            "link": [{"relation": "next", "url": "https://evil.example/fhir/Encounter?page=2"}],
            "entry": [],
        },
    )
    fhir = FhirClient(BASE, BearerAuth("s3cret-token"), ClientOptions())
    with pytest.raises(ForeignUrlError) as error:
        fhir.search("Encounter?status=finished")
    assert [c.request.url for c in responses.calls] == [f"{BASE}/Encounter?status=finished"]
    assert "evil.example" in str(error.value)
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example/fhir/Encounter/1",
        "//evil.example/fhir/Encounter/1",
        "http://ehr.example.org/fhir/Encounter/1",  # same host, another scheme: another origin
        "https://ehr.example.org:8443/fhir/Encounter/1",
    ],
)
@responses.activate
def test_a_redirect_that_leaves_the_origin_is_refused(location: str) -> None:
    responses.get(f"{BASE}/Encounter/1", status=302, headers={"Location": location})
    fhir = FhirClient(BASE, BearerAuth("s3cret-token"), ClientOptions())
    with pytest.raises(ForeignUrlError):
        fhir.read("Encounter/1")
    assert len(responses.calls) == 1


@responses.activate
def test_a_redirect_within_the_origin_is_followed_with_the_token() -> None:
    responses.get(f"{BASE}/Encounter/1", status=301, headers={"Location": "/fhir/Encounter/2"})
    responses.get(f"{BASE}/Encounter/2", json={"resourceType": "Encounter", "id": "2"})
    fhir = FhirClient(BASE, BearerAuth("s3cret-token"), ClientOptions())
    assert fhir.read("Encounter/1")["id"] == "2"
    assert responses.calls[1].request.headers["Authorization"] == "Bearer s3cret-token"


@responses.activate
def test_a_success_that_is_not_json_is_retried_never_read_as_empty() -> None:
    url = f"{BASE}/Encounter?_id=1"
    responses.get(url, body="<html>proxy error</html>", status=200)
    responses.get(url, json={"resourceType": "Bundle", "entry": []})
    clock = Clock()
    assert client(clock).search("Encounter?_id=1").entries == []
    assert len(responses.calls) == 2
    responses.replace(responses.GET, url, body='{"resourceType": "Bun', status=200)
    with pytest.raises(TemporaryFhirError, match="not JSON"):
        client(clock, retry_total_seconds=1.0).search("Encounter?_id=1")


@responses.activate
def test_a_client_error_is_fatal_at_once_with_the_servers_words() -> None:
    responses.post(BASE, status=422, json=OUTCOME)
    clock = Clock()
    with pytest.raises(FatalFhirError) as error:
        client(clock).transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert len(responses.calls) == 1
    assert clock.slept == []
    assert str(error.value) == f"POST {BASE} → HTTP 422: error: Encounter is locked"


@responses.activate
def test_a_version_conflict_is_its_own_error() -> None:
    responses.post(BASE, status=412, json=OUTCOME)
    with pytest.raises(VersionConflict):
        client(Clock()).transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})


@responses.activate
def test_every_call_has_timeouts_accept_and_auth_and_no_token_in_errors() -> None:
    responses.get(f"{BASE}/Encounter?_id=1", status=403, json=OUTCOME)
    fhir = FhirClient(
        BASE, BearerAuth("s3cret-token"), ClientOptions(connect_timeout=2, read_timeout=9)
    )
    with pytest.raises(FatalFhirError) as error:
        fhir.search("Encounter?_id=1")
    sent = responses.calls[0].request
    assert sent.headers["Accept"] == "application/fhir+json"
    assert sent.headers["Authorization"] == "Bearer s3cret-token"
    assert sent.headers["Prefer"] == "handling=strict"
    assert sent.req_kwargs["timeout"] == (2, 9)
    assert "s3cret" not in str(error.value)
    assert "s3cret" not in repr(fhir.auth)
    assert "_id=1" not in str(error.value)  # queries can carry identifiers


@responses.activate
def test_paging_follows_next_links_up_to_the_cap() -> None:
    for n in range(4):
        nxt = [{"relation": "next", "url": f"{BASE}/Encounter?page={n + 1}"}] if n < 3 else []
        url = f"{BASE}/Encounter?page={n}" if n else f"{BASE}/Encounter?status=finished"
        responses.get(
            url,
            json={
                "resourceType": "Bundle",
                "link": nxt,
                "entry": [{"resource": {"resourceType": "Encounter", "id": str(n)}}],
            },
        )
    full = client(Clock()).search("Encounter?status=finished")
    assert ([e["resource"]["id"] for e in full.entries], full.capped) == (
        ["0", "1", "2", "3"],
        False,
    )
    capped = client(Clock(), page_cap=2).search("Encounter?status=finished")
    assert ([e["resource"]["id"] for e in capped.entries], capped.capped) == (["0", "1"], True)


# --- SMART Backend Services ---------------------------------------------------------------------


def _key(tmp_path: Path, kind: str) -> tuple[Path, object]:
    key = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP384R1())
    )
    path = tmp_path / f"{kind}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, key.public_key()


def _smart(tmp_path: Path, clock: Clock, kind: str = "rsa") -> tuple[SmartBackendAuth, object]:
    path, public = _key(tmp_path, kind)
    responses.get(
        f"{BASE}/.well-known/smart-configuration",
        json={"token_endpoint": "https://ehr.example.org/auth/token"},
    )
    auth = SmartBackendAuth(
        BASE,
        "theracharge",
        path,
        "key-1",
        "system/*.read",
        requests.Session(),
        (5, 30),
        clock=clock,
    )
    return auth, public


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RS384"), ("ec", "ES384")])
@responses.activate
def test_the_client_assertion_is_signed_as_smart_requires(
    tmp_path: Path, kind: str, alg: str
) -> None:
    clock = Clock()
    auth, public = _smart(tmp_path, clock, kind)
    responses.post(
        "https://ehr.example.org/auth/token", json={"access_token": "t1", "expires_in": 300}
    )
    assert auth.headers() == {"Authorization": "Bearer t1"}
    form = parse_qs(responses.calls[-1].request.body)
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == ["system/*.read"]
    assert form["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ]
    token = form["client_assertion"][0]
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["kid"]) == (alg, "key-1")
    claims = jwt.decode(
        token,
        public,
        algorithms=[alg],
        audience="https://ehr.example.org/auth/token",
        options={"verify_exp": False},
    )
    assert claims["iss"] == claims["sub"] == "theracharge"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"]


@responses.activate
def test_the_token_is_cached_until_shortly_before_it_expires(tmp_path: Path) -> None:
    clock = Clock()
    auth, _ = _smart(tmp_path, clock)
    responses.post(
        "https://ehr.example.org/auth/token", json={"access_token": "t1", "expires_in": 300}
    )
    auth.headers()
    auth.headers()
    token_calls = [c for c in responses.calls if c.request.url.endswith("/auth/token")]
    assert len(token_calls) == 1
    clock.now += 250  # within a minute of expiry: renewed
    auth.headers()
    assert len([c for c in responses.calls if c.request.url.endswith("/auth/token")]) == 2


@responses.activate
def test_a_401_gets_a_new_token_once_then_fails(tmp_path: Path) -> None:
    clock = Clock()
    auth, _ = _smart(tmp_path, clock)
    responses.post(
        "https://ehr.example.org/auth/token", json={"access_token": "t1", "expires_in": 3600}
    )
    responses.post(
        "https://ehr.example.org/auth/token", json={"access_token": "t2", "expires_in": 3600}
    )
    responses.get(f"{BASE}/Encounter/1", status=401)
    responses.get(f"{BASE}/Encounter/1", json={"resourceType": "Encounter", "id": "1"})
    fhir = FhirClient(BASE, auth, sleep=clock.sleep, clock=clock)
    assert fhir.read("Encounter/1")["id"] == "1"
    reads = [c for c in responses.calls if "/Encounter/1" in c.request.url]
    assert [c.request.headers["Authorization"] for c in reads] == ["Bearer t1", "Bearer t2"]
    responses.get(f"{BASE}/Encounter/2", status=401)
    with pytest.raises(FatalFhirError) as error:
        fhir.read("Encounter/2")
    assert error.value.status == 401
    assert "Bearer" not in str(error.value)


@responses.activate
def test_a_refused_assertion_is_a_clear_error(tmp_path: Path) -> None:
    clock = Clock()
    auth, _ = _smart(tmp_path, clock)
    responses.post(
        "https://ehr.example.org/auth/token",
        status=401,
        json={"error": "invalid_client", "error_description": "unknown kid"},
    )
    with pytest.raises(FatalFhirError, match="HTTP 401: unknown kid"):
        auth.headers()


def test_keys_that_cannot_sign_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p256.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="RSA or P-384"):
        SmartBackendAuth(BASE, "c", path, "k", "s", requests.Session(), (1, 1))
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ValueError, match="not a readable"):
        SmartBackendAuth(BASE, "c", tmp_path / "junk.pem", "k", "s", requests.Session(), (1, 1))


def test_the_session_reads_proxies_and_ca_bundle_from_the_environment_once_per_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from plugin.gateway.client import EhrSession

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.hospital.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/hospital-ca.pem")
    calls: list[str] = []
    original = requests.utils.get_environ_proxies

    def counting(url: str, no_proxy: object = None) -> object:
        calls.append(url)
        return original(url, no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    session = EhrSession()
    for _ in range(3):
        found = session.merge_environment_settings(
            "https://ehr.example.org/fhir/Encounter?x=1", {}, None, None, None
        )
        assert found["proxies"]["https"] == "http://proxy.hospital.example:3128"
        assert found["verify"] == "/etc/ssl/hospital-ca.pem"
    inside = session.merge_environment_settings(
        "https://internal.example/fhir/metadata", {}, None, None, None
    )
    assert "https" not in inside["proxies"]  # NO_PROXY honoured, as requests does
    explicit = session.merge_environment_settings(
        "https://ehr.example.org/fhir/metadata", {}, None, False, None
    )
    assert explicit["verify"] is False
    assert len(calls) == 2  # once per server, not once per request


@responses.activate
def test_requests_are_prepared_as_requests_would_less_what_we_never_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a .netrc entry for the EHR is not sent: the EHR's credentials are the configured ones
    (tmp_path / ".netrc").write_text("machine ehr.example.org login u password p\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    responses.get(
        f"{BASE}/Encounter/1",
        json={"resourceType": "Encounter", "id": "1"},
        headers={"Set-Cookie": "route=node-2; Path=/"},  # a load balancer's stickiness
    )
    responses.get(f"{BASE}/Encounter?_id=a%20b", json={"resourceType": "Bundle", "entry": []})
    responses.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response"})
    client = FhirClient(BASE, BearerAuth("tok"))
    client.read("Encounter/1")
    client.search("Encounter?_id=a b")  # a space, as a server's next link may carry one
    client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    first, second, third = (call.request for call in responses.calls)
    assert first.headers["Authorization"] == "Bearer tok"
    assert first.headers["Accept"] == "application/fhir+json"
    assert "Cookie" not in first.headers
    assert second.url == f"{BASE}/Encounter?_id=a%20b"  # normalised as requests does
    assert second.headers["Cookie"] == "route=node-2"  # the session's cookie sent back
    assert third.headers["Content-Type"] == "application/fhir+json"
    assert third.headers["Content-Length"] == str(len(third.body))
    assert all(c.request.headers["Authorization"] == "Bearer tok" for c in responses.calls)


_URL_PIECES = [
    "a", "Z", "0", "-", ".", "_", "~", "!", "$", "&", "'", "(", ")", "*", "+", ",", ";", "=",
    ":", "@", "/", "?", "#", " ", "%", "%2F", "%2f", "%41", "%7E", "%7e", "%30", "%2D", "%20",
    "%7C", "%5B", "|", "[", "]", "é", "\\", '"', "<", "{", "/./", "/../", "/.", "%G1", "^", "`",
]  # fmt: skip
_URL_HEADS = [
    "http://ehr.example.org", "https://ehr.example.org:8443", "http://127.0.0.1:53687",
    "HTTP://EHR.example.org", "http://ehr.example.org:80", "https://user@ehr.example.org",
    "http://ehr.example.org:99999", "http://bücher.example", "http://.example.org",
]  # fmt: skip


def test_a_url_prepared_without_requests_is_the_one_requests_would_prepare() -> None:
    """The session skips requests' URL normalisation (≈ 50 µs a request) only for a URL that
    it would give back unchanged: compared with requests itself over URLs made of the
    characters and percent-encodings it treats specially, at every origin kind."""
    import random

    from plugin.gateway.client import EhrSession

    session = EhrSession()
    chooser = random.Random(19)
    skipped = 0
    urls = [f"{head}/fhir/Encounter?status=finished&date=ge2026-11-01" for head in _URL_HEADS]
    for _ in range(4000):
        rest = "".join(chooser.choice(_URL_PIECES) for _ in range(chooser.randint(0, 8)))
        urls.append(f"{chooser.choice(_URL_HEADS)}/fhir/{rest}")
        urls.append(f"{chooser.choice(_URL_HEADS)}/fhir/Procedure?x={rest}")
    for url in urls:
        theirs = requests.PreparedRequest()
        try:
            theirs.prepare_url(url, None)
        except requests.RequestException as refused:
            assert not session._unchanged(url), url
            with pytest.raises(type(refused)):
                session.prepare_request(requests.Request("GET", url))
            continue
        assert session.prepare_request(requests.Request("GET", url)).url == theirs.url, url
        skipped += session._unchanged(url)
    # what we send (our base, urlencoded queries) takes the short way
    assert session._unchanged(
        "http://127.0.0.1:53687/fhir/Procedure?performer=Practitioner%2Fp1%2CPractitioner%2Fp2"
        "&date=ge2026-11-01T00%3A00%3A00%2B00%3A00&_count=100"
    )
    assert 500 < skipped < len(urls)  # both ways taken
