"""`theracharge subscribe` and `theracharge token-hash`."""

from __future__ import annotations

import io
import json

import pytest
import responses

from plugin.commands import main as cli
from plugin.config.tokens import token_hash

BASE = "https://ehr.example.org/fhir"


@responses.activate
def test_subscribe_creates_a_rest_hook_subscription_with_the_secret_header(
    monkeypatch, capsys
) -> None:
    monkeypatch.setenv("THERACHARGE_NOTIFICATION_SECRET", "s3cret")
    responses.post(
        f"{BASE}/Subscription",
        json={"resourceType": "Subscription", "id": "sub1", "status": "requested"},
        status=201,
    )
    code = cli.main(
        [
            "subscribe",
            "--fhir-base",
            BASE,
            "--endpoint",
            "https://tc.example.org/notifications/fhir",
        ]
    )
    assert code == 0
    assert "Subscription/sub1 created: requested" in capsys.readouterr().out
    sent = json.loads(responses.calls[0].request.body)
    assert sent["criteria"] == "Encounter?status=finished"
    assert sent["channel"] == {
        "type": "rest-hook",
        "endpoint": "https://tc.example.org/notifications/fhir",
        "payload": "application/fhir+json",
        "header": ["X-TheraCharge-Secret: s3cret"],
    }


def test_subscribe_needs_the_shared_secret_first(monkeypatch, capsys) -> None:
    monkeypatch.delenv("THERACHARGE_NOTIFICATION_SECRET", raising=False)
    assert (
        cli.main(["subscribe", "--fhir-base", BASE, "--endpoint", "https://tc.example.org/n"]) == 2
    )
    assert "THERACHARGE_NOTIFICATION_SECRET" in capsys.readouterr().err


@responses.activate
def test_a_refused_subscription_is_exit_1_with_the_servers_words(monkeypatch, capsys) -> None:
    monkeypatch.setenv("THERACHARGE_NOTIFICATION_SECRET", "s3cret")
    responses.post(
        f"{BASE}/Subscription",
        status=403,
        json={
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "forbidden",
                    "diagnostics": "scope system/Subscription.write missing",
                }
            ],
        },
    )
    assert (
        cli.main(["subscribe", "--fhir-base", BASE, "--endpoint", "https://tc.example.org/n"]) == 1
    )
    err = capsys.readouterr().err
    assert "HTTP 403" in err
    assert "scope system/Subscription.write missing" in err
    assert len(responses.calls) == 1  # a create is not repeated blindly


def test_token_hash_prints_the_entry_never_the_token(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("my-token\n"))
    assert cli.main(["token-hash", "billing-batch"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"billing-batch=sha256:{token_hash('my-token')}"
    assert "my-token" not in out


@pytest.mark.parametrize("entry", ["x=sha256:abc", "x:root=sha256:" + "a" * 64])
def test_a_bad_token_entry_is_a_named_config_error(monkeypatch, capsys, entry: str) -> None:
    monkeypatch.setenv("THERACHARGE_API_TOKENS", entry)
    monkeypatch.setattr("sys.stdin", io.StringIO("{}"))
    assert cli.main(["units"]) == 2
    assert "THERACHARGE_API_TOKENS[0]" in capsys.readouterr().err
