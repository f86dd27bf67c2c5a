"""The lean hook route (plugin/web/hook_route.py): the plain call answered before Flask, with
the answer, errors, metrics, request id and logs the Flask route gives."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.test import Client
from werkzeug.wrappers import Response

from plugin.web import hook_route
from plugin.web.observability import CALL, JsonFormatter
from tests.helpers.hooks import hook_body

PATH = "/cds-services/therapy-charges"


def _lean(app: Flask, body: Any, token: str | None, **headers: str) -> Any:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return app.test_client().post(PATH, json=body, headers=headers)


def _flask(app: Flask, body: Any, token: str | None) -> Any:
    """The same call answered by the Flask app behind the lean route."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = Client(app.wsgi_app.flask_app, Response)  # type: ignore[attr-defined]
    return client.post(PATH, json=body, headers=headers)


@pytest.fixture
def flask_calls(monkeypatch: pytest.MonkeyPatch, make_app) -> tuple[Flask, list[str]]:
    """An app that notes each request its Flask part answers."""
    app = make_app()
    seen: list[str] = []
    inner = app.wsgi_app.flask_app  # type: ignore[attr-defined]

    def noting(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    monkeypatch.setattr(app.wsgi_app, "flask_app", noting)
    return app, seen


def _without_ids(answer: dict[str, Any]) -> dict[str, Any]:
    """Cards carry a uuid of their own on each call."""
    for card in answer["cards"]:
        card.pop("uuid", None)
    return answer


def test_the_plain_call_is_answered_without_flask_and_as_flask_answers_it(
    flask_calls: tuple[Flask, list[str]], sign
) -> None:
    app, seen = flask_calls
    lean = _lean(app, hook_body(), sign())
    assert seen == []  # answered by the lean route
    flask = _flask(app, hook_body(), sign())
    assert lean.status_code == flask.status_code == 200
    assert lean.headers["Content-Type"] == flask.headers["Content-Type"] == "application/json"
    assert _without_ids(lean.json) == _without_ids(flask.json)
    assert lean.json["cards"]


def test_a_body_the_schema_must_read_goes_to_flask_whole(
    flask_calls: tuple[Flask, list[str]], sign
) -> None:
    app, seen = flask_calls
    answer = _lean(app, hook_body(hook="patient-view"), sign())
    assert seen == [PATH]
    assert answer.status_code == 400
    assert "hook" in answer.json["fields"]  # the schema read the body put back for it
    answer = app.test_client().post(
        PATH,
        data=b"{not json",
        content_type="application/json",
        headers={"Authorization": f"Bearer {sign()}"},
    )
    assert answer.status_code == 400
    assert len(seen) == 2


def test_errors_on_the_lean_route_are_flasks(flask_calls: tuple[Flask, list[str]], sign) -> None:
    app, seen = flask_calls
    token = sign()
    assert _lean(app, hook_body(), token).status_code == 200
    replayed = _lean(app, hook_body(), token, **{"X-Request-Id": "replay-1"})
    assert replayed.status_code == 401
    assert replayed.json == {"error": "unauthorized"}
    assert replayed.headers["X-Request-Id"] == "replay-1"
    unsigned = _lean(app, hook_body(), None)
    assert (unsigned.status_code, unsigned.json) == (401, {"error": "unauthorized"})
    missing = _lean(app, hook_body(prefetch={"encounter": None}), sign())
    assert missing.status_code == 412
    assert missing.json["resourceType"] == "OperationOutcome"
    assert seen == []  # the plain bodies never reached Flask's routing, only its handlers


def test_the_lean_route_counts_and_names_its_requests(make_app, sign) -> None:
    app = make_app()
    given = _lean(app, hook_body(), sign(), **{"X-Request-Id": "ehr-call-7"})
    assert given.headers["X-Request-Id"] == "ehr-call-7"
    made = _lean(app, hook_body(), sign())
    assert len(made.headers["X-Request-Id"]) == 32
    _lean(app, hook_body(), None)
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    counted = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith("theracharge_requests_total{") and "<service_id>" in line
    }
    ok = 'theracharge_requests_total{endpoint="/cds-services/<service_id>",status="200"}'
    refused = 'theracharge_requests_total{endpoint="/cds-services/<service_id>",status="401"}'
    assert counted[ok] >= 2
    assert counted[refused] >= 1


def test_a_log_line_of_a_lean_call_carries_its_request_id_and_hook_instance() -> None:
    record = logging.LogRecord("theracharge", logging.WARNING, __file__, 1, "a warning", (), None)
    bound = CALL.set(("req-1", "hook-9"))
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        CALL.reset(bound)
    assert (line["request_id"], line["hookInstance"]) == ("req-1", "hook-9")
    assert "request_id" not in json.loads(JsonFormatter().format(record))


def test_a_body_over_the_limit_is_left_to_flask(
    flask_calls: tuple[Flask, list[str]], sign, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, seen = flask_calls
    monkeypatch.setattr(app.wsgi_app, "limit", 10)
    assert hook_route.PATH == PATH
    _lean(app, hook_body(), sign())
    assert seen == [PATH]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/x+json",
        "application/jsonx",
        "text/plain",
        "",
    ],
)
def test_the_lean_route_reads_json_exactly_when_flask_would(
    flask_calls: tuple[Flask, list[str]], sign, content_type: str
) -> None:
    app, seen = flask_calls
    answer = app.test_client().post(
        PATH,
        data=json.dumps(hook_body()),
        headers={"Authorization": f"Bearer {sign()}", "Content-Type": content_type},
    )
    with app.test_request_context(PATH, method="POST", content_type=content_type):
        json_for_flask = request.is_json
    assert (seen == []) is json_for_flask  # the lean route took it only if Flask reads JSON
    assert answer.status_code == (200 if json_for_flask else 400)
