"""Errors on the pages are pages (in their layout, with a way back); the APIs keep JSON."""

from __future__ import annotations

from typing import Any

from plugin.config.tokens import token_hash


def _signed_in(make_app: Any, role: str) -> Any:
    client = make_app(THERACHARGE_API_TOKENS=f"ann:admin=sha256:{token_hash('t')}").test_client()
    with client.session_transaction() as session:
        session.update(who="bea", role=role, csrf="form-token")
    return client


def test_a_missing_decision_is_a_page_that_says_so(make_app: Any) -> None:
    answer = _signed_in(make_app, "billing").get("/decisions/e404")
    assert answer.status_code == 404
    assert answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert "<h1>Not Found</h1>" in page
    assert "no decision for Encounter/e404 yet" in page
    assert 'href="/worklist"' in page


def test_a_role_that_may_not_is_a_403_page_and_a_stale_form_a_400_page(make_app: Any) -> None:
    viewer = _signed_in(make_app, "viewer")
    answer = viewer.post("/decisions/e1/rerun", data={"csrf": "form-token"})
    assert (answer.status_code, answer.mimetype) == (403, "text/html")
    assert "the viewer role cannot do this" in answer.get_data(as_text=True)
    stale = viewer.post("/decisions/e1/rerun", data={"csrf": "old"})
    assert (stale.status_code, stale.mimetype) == (400, "text/html")
    assert "the form expired" in stale.get_data(as_text=True)


def test_the_apis_still_answer_errors_in_json(make_app: Any) -> None:
    client = make_app(THERACHARGE_API_TOKENS=f"ann:admin=sha256:{token_hash('t')}").test_client()
    answer = client.get("/admin/api/v1/mappings/nope", headers={"Authorization": "Bearer t"})
    assert answer.status_code == 404
    assert answer.is_json
    assert answer.json["error"] == "not-found"
