"""/openapi.json documents every operation (security, request body, success and error responses,
examples), is a valid OpenAPI document, and the reference page is served without a CDN."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

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
