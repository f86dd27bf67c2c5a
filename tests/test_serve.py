"""`theracharge serve` under gunicorn: metrics add up across workers, no shared control socket,
and a refused start names the missing setting."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.service import THERACHARGE, running_service

pytestmark = pytest.mark.slow


def _healthz_count(text: str) -> float:
    match = re.search(
        r'^theracharge_requests_total\{endpoint="/healthz",status="200"\} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


def test_counters_add_up_across_workers_and_never_go_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"THERACHARGE_CDS_AUTH": "disabled", "HOME": str(home), "XDG_RUNTIME_DIR": ""}
    with running_service(tmp_path, env, workers=2) as service:
        session = requests.Session()
        seen = [_healthz_count(requests.get(f"{service.url}/metrics", timeout=5).text)]
        for _ in range(5):
            for _ in range(10):
                assert session.get(f"{service.url}/healthz", timeout=5).status_code == 200
            scrape = requests.get(f"{service.url}/metrics", timeout=5)  # a new connection
            seen.append(_healthz_count(scrape.text))
        assert scrape.headers["Content-Type"].count("charset") == 1
        assert seen == sorted(seen)  # a counter never goes back between scrapes
        assert seen[-1] - seen[0] == 50  # every worker's requests, added up
        assert len(service.workers()) == 2
    assert not (home / ".gunicorn").exists()  # no control socket shared by every instance


def test_serve_refuses_to_start_without_its_public_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THERACHARGE_")}
    env.update(
        THERACHARGE_INSTANCE_DIR=str(tmp_path / "instance"),
        THERACHARGE_CDS_ISSUERS="https://ehr.example.org",
        THERACHARGE_CDS_JWKS=str(tmp_path / "jwks.json"),
    )
    done = subprocess.run(
        [THERACHARGE, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "THERACHARGE_PUBLIC_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_says_at_start_what_is_not_configured(tmp_path: Path) -> None:
    from plugin.config.files import load_settings
    from plugin.config.tokens import token_hash
    from plugin.web.server import unconfigured

    bare = unconfigured(load_settings({}))
    for name in (
        "THERACHARGE_API_TOKENS",
        "THERACHARGE_CDS_ISSUERS",
        "THERACHARGE_NOTIFICATION_SECRET",
        "THERACHARGE_PUBLIC_URL",
        "THERACHARGE_FHIR_BASE_URL",
    ):
        assert sum(w.startswith(name) for w in bare) == 1, (name, bare)
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    ready = load_settings(
        {
            "THERACHARGE_API_TOKENS": f"ann:admin=sha256:{token_hash('t')}",
            "THERACHARGE_CDS_ISSUERS": "https://ehr.example.org",
            "THERACHARGE_CDS_JWKS": str(jwks),
            "THERACHARGE_NOTIFICATION_SECRET": "s3cret",
            "THERACHARGE_PUBLIC_URL": "https://tc.example.org",
            "THERACHARGE_FHIR_BASE_URL": "https://ehr.example.org/fhir",
        }
    )
    assert unconfigured(ready) == []
    shared = load_settings(
        {
            "THERACHARGE_DATABASE_URL": "postgresql+psycopg://tc@db/tc",
            "THERACHARGE_BROKER_URL": "redis://r",
        }
    )
    assert any(w.startswith("THERACHARGE_SECRET_KEY") for w in unconfigured(shared))
    assert not any(w.startswith("THERACHARGE_BROKER_URL") for w in unconfigured(shared))
    one_machine = load_settings({"THERACHARGE_BROKER_URL": "redis://r"})
    assert any(w.startswith("THERACHARGE_BROKER_URL") for w in unconfigured(one_machine))
    assert not any(w.startswith("THERACHARGE_SECRET_KEY") for w in unconfigured(one_machine))


def test_a_broker_url_that_is_not_redis_is_refused_without_echoing_it() -> None:
    from plugin.config.files import load_settings
    from plugin.schemas.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        load_settings({"THERACHARGE_BROKER_URL": "amqp://user:pw@mq"})
    assert "redis://" in str(refused.value)
    assert "pw" not in str(refused.value)


def test_serve_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from plugin.commands import main as cli

    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "(default: 8000)" in out
    assert "(default: 2)" in out
    assert "(default: 127.0.0.1)" in out


def test_every_log_line_of_the_service_is_json_gunicorns_own_too(tmp_path: Path) -> None:
    import json

    from tests.service import running_service

    with running_service(tmp_path, {}) as service:
        assert requests.get(f"{service.url}/healthz", timeout=10).status_code == 200
    lines = [ln for ln in service.log.read_text().splitlines() if ln.strip()]
    assert lines
    entries = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    loggers = {e["logger"] for e in entries}
    assert "gunicorn.error" in loggers  # "Booting worker …", "Listening at …"
    assert any(e["message"].startswith("not configured:") for e in entries)


def _chunked(url: str, path: str, body: bytes) -> tuple[int, bytes]:
    """POST `body` with Transfer-Encoding: chunked (no Content-Length), as a raw socket sends
    it: requests would set a length."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        try:
            for start in range(0, len(body), 8192):
                chunk = body[start : start + 8192]
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed before reading it all: the answer is below
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def test_a_chunked_body_over_the_limit_is_413_and_one_under_it_is_read_whole(
    tmp_path: Path,
) -> None:
    """Under gunicorn, Werkzeug handed the app a chunked body silently cut at the limit (then a
    400 "the body must be a JSON object")."""
    import json

    from tests.helpers.hooks import hook_body

    env = {"THERACHARGE_CDS_AUTH": "disabled", "THERACHARGE_MAX_REQUEST_BYTES": "20000"}
    with running_service(tmp_path, env, workers=1) as service:
        big = json.dumps(hook_body(padding="x" * 100_000)).encode()
        status, body = _chunked(service.url, "/cds-services/therapy-charges", big)
        assert status == 413
        assert json.loads(body)["error"] == "request-entity-too-large"
        small = json.dumps(hook_body()).encode()
        assert len(small) < 20000
        status, body = _chunked(service.url, "/cds-services/therapy-charges", small)
        assert status == 200, body[:300]
        assert json.loads(body)["cards"]


def test_the_access_log_is_json_with_credentials_redacted(tmp_path: Path) -> None:
    import json

    env = {"THERACHARGE_ACCESS_LOG": "true"}
    with running_service(tmp_path, env, workers=1) as service:
        requests.get(f"{service.url}/smart/callback?code=S3CR3T-C0DE&state=ST4TE", timeout=10)
        requests.get(f"{service.url}/healthz?access_token=T0KEN", timeout=10)
        assert requests.get(f"{service.url}/healthz?x=1", timeout=10).status_code == 200
    log = service.log.read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    access = [e["message"] for e in entries if e["logger"] == "gunicorn.access"]
    assert any("/smart/callback?code=[redacted]&state=[redacted]" in a for a in access), access
    assert any("access_token=[redacted]" in a for a in access), access
    for secret in ("S3CR3T-C0DE", "ST4TE", "T0KEN"):
        assert secret not in log


def test_serve_listens_for_hl7_events_in_a_process_of_its_own_and_stops_it(
    tmp_path: Path,
) -> None:
    from hl7.client import MLLPClient

    from tests.ehr import free_port

    port = free_port()
    env = {"THERACHARGE_CDS_AUTH": "disabled", "THERACHARGE_HL7_LISTEN": f"127.0.0.1:{port}"}
    adt = (
        "MSH|^~\\&|ENGINE|HOSP|TC|THER|20261102||ADT^A03^ADT_A03|C9|P|2.5.1\r"
        "PV1|1|O|||||||||||||||||V-1^^^H^VN"
    )
    with running_service(tmp_path, env, workers=2) as service:
        answer = b""
        for _ in range(100):  # the listener process starts beside gunicorn's workers
            try:
                with MLLPClient("127.0.0.1", port) as client:
                    answer = client.send_message(adt)
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        assert b"MSA|AE|C9|no EHR configured" in answer  # heard, and said why it cannot act
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in service.workers()]
        assert any(b"spawn_main" in c for c in commands)  # the listener: a process of its own
    with pytest.raises(ConnectionRefusedError):  # stopped with the service
        MLLPClient("127.0.0.1", port)
