"""/openapi.json documents every operation (security, request body, success and error responses,
examples), is a valid OpenAPI document, and the reference page is served without a CDN."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from plugin.config.tokens import token_hash

# Operations that take no body: reads, deletes, and POSTs whose input is the URL alone
NO_BODY = {
    ("post", "/api/v1/encounters/{encounter_id}/charges"),
    ("post", "/admin/api/v1/notifications/{notification_id}/retry"),
    ("post", "/admin/api/v1/dead-letters/{kind}/{row_id}/retry"),
}
NOT_API = {"static", "pages", "smart", "api-docs", "api_docs_assets"}


def _spec(make_app: Any) -> tuple[Any, dict[str, Any]]:
    app = make_app()
    return app, app.test_client().get("/openapi.json").json


def test_the_document_is_valid_openapi(make_app: Any) -> None:
    _, spec = _spec(make_app)
    validate(spec)  # raises on any error of the OpenAPI 3.0 schema
    assert set(spec["components"]["securitySchemes"]) == {
        "apiToken",
        "cdsClient",
        "notificationSecret",
    }


def test_every_route_is_documented_with_security_bodies_responses_and_examples(
    make_app: Any,
) -> None:
    app, spec = _spec(make_app)
    documented = {
        (method, path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "delete", "patch")
    }
    routes = set()
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.split(".")[0]
        if blueprint in NOT_API or rule.endpoint in NOT_API or rule.rule == "/openapi.json":
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", f"{{{argument}}}")
            for converter in ("int(max=2147483647)", "path", "int"):
                path = path.replace(f"<{converter}:{argument}>", f"{{{argument}}}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method.lower(), path))
    assert routes - documented == set()  # every route of the API is in the document
    for method, path in documented:
        operation = spec["paths"][path][method]
        where = f"{method.upper()} {path}"
        assert "security" in operation, where
        assert operation.get("summary"), where
        responses = operation["responses"]
        assert "default" not in responses, where
        ok = [code for code in responses if code.startswith("2")]
        assert ok, where
        content = responses[ok[0]].get("content", {})
        assert any("example" in media for media in content.values()), where
        if method in ("post", "put") and (method, path) not in NO_BODY:
            body = operation.get("requestBody", {}).get("content", {})
            assert any("example" in media for media in body.values()), where
        if operation["security"]:  # a protected operation says how it refuses
            assert "401" in responses, where


def test_the_reference_page_and_its_assets_are_ours(make_app: Any) -> None:
    client = make_app().test_client()
    page = client.get("/api-docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api-docs/assets/swagger-ui-bundle.js" in html
    assert "https://" not in html  # nothing from a CDN
    script = client.get("/api-docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert len(script.data) > 100_000
    assert client.get("/api-docs/assets/../app.py").status_code == 404


# --- generated from the schemas: every example valid, every request example accepted ----------

TOKENS = f"ann:admin=sha256:{token_hash('admin-token')}"
ADMIN = {"Authorization": "Bearer admin-token", "X-TheraCharge-Secret": "s3cret"}
PATH_VALUES = {  # what each path parameter is when a documented request is sent
    "service_id": "therapy-charges",
    "name": "local.json",
    "table": "ptp",
    "encounter_id": "enc-1",
}
QUERY_VALUES = {"reason": "a documented example", "effective": "2027-01-01"}


def _resolved(node: Any, spec: dict[str, Any]) -> Any:
    """A schema with every `$ref` replaced by what it names (our schemas have no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            _, _, kind, name = node["$ref"].split("/")
            return _resolved(spec["components"][kind][name], spec)
        return {key: _resolved(value, spec) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolved(item, spec) for item in node]
    return node


def _media(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, direction, media) of every request body and answer of every operation."""
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":  # the path's own (its path parameters)
                continue
            where = f"{method.upper()} {path}"
            body = operation.get("requestBody", {})
            for media in body.get("content", {}).values():
                yield where, "request", media
            for status, answer in operation["responses"].items():
                answer = _resolved(answer, spec)
                for media in answer.get("content", {}).values():
                    yield f"{where} → {status}", "answer", media


def test_the_schemas_are_real_and_every_example_is_valid_against_its_schema(make_app) -> None:
    _, spec = _spec(make_app)
    checked = 0
    for where, _, media in _media(spec):
        schema = _resolved(media["schema"], spec)
        admin_body = where.startswith(("PUT /admin/", "POST /admin/")) and "→" not in where
        if admin_body and schema.get("type") != "string":  # a file is a string
            assert schema.get("properties"), f"{where}: a bare object"
        if "example" in media:
            OAS30Validator(schema).validate(media["example"])  # raises naming what is wrong
            checked += 1
    assert checked >= 60
    put_payers = spec["paths"]["/admin/api/v1/payers"]["put"]["requestBody"]
    body = _resolved(put_payers["content"]["application/json"]["schema"], spec)
    assert set(body["required"]) == {"reason", "payers"}
    payer = body["properties"]["payers"]["properties"]["payers"]["items"]
    assert {"id", "name", "method", "identifiers", "source"} <= set(payer["required"])
    delete = spec["paths"]["/admin/api/v1/mappings/{name}"]["delete"]
    reason = next(p for p in delete["parameters"] if p["name"] == "reason")
    assert (reason["in"], reason["required"]) == ("query", True)  # declared, as it is required
    rollback = spec["paths"]["/admin/api/v1/fees/rollback"]["post"]["responses"]
    assert {"400", "404", "422"} <= set(rollback)


def _requests(spec: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Every documented request example as (method, url, media type, example)."""
    for path, operations in spec["paths"].items():
        url = path
        for name, value in PATH_VALUES.items():
            url = url.replace(f"{{{name}}}", value)
        for method, operation in operations.items():
            if method == "parameters":
                continue
            query = [
                f"{p['name']}={QUERY_VALUES[p['name']]}"
                for p in operation.get("parameters", [])
                if p["in"] == "query" and p.get("required")
            ]
            target = f"{url}?{'&'.join(query)}" if query else url
            for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
                if "example" in media:
                    yield method, target, media_type, media["example"]


def test_every_documented_request_example_is_accepted_by_the_server(make_app) -> None:
    app = make_app(
        THERACHARGE_API_TOKENS=TOKENS,
        THERACHARGE_CDS_AUTH="disabled",
        THERACHARGE_NOTIFICATION_SECRET="s3cret",
    )
    client = app.test_client()
    spec = client.get("/openapi.json").json
    requests = sorted(_requests(spec), key=lambda r: "rollback" in r[1])  # saves first
    assert len(requests) >= 15
    for method, url, media_type, example in requests:
        data = example if isinstance(example, str) else json.dumps(example)
        answer = client.open(
            url, method=method.upper(), data=data, content_type=media_type, headers=ADMIN
        )
        assert answer.status_code == 200, (method, url, answer.get_data(as_text=True)[:500])


def test_an_undeclared_method_is_405_naming_the_methods_the_path_takes(make_app) -> None:
    client = make_app(THERACHARGE_API_TOKENS=TOKENS).test_client()
    answer = client.patch("/admin/api/v1/payers", headers=ADMIN)
    assert answer.status_code == 405
    assert set(answer.headers["Allow"].split(", ")) >= {"GET", "PUT"}
    assert answer.json["error"] == "method-not-allowed"
    assert client.delete("/healthz").headers["Allow"]
