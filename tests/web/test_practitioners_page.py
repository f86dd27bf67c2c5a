"""The practitioner table's page: listed practitioners, an entry added (in force for the next
decision), a bad NPI refused naming the field, a rollback; viewers only read."""

from __future__ import annotations

from typing import Any

from plugin.config.tokens import token_hash
from plugin.rules.visit import Role


def _signed_in(make_app: Any, role: str) -> tuple[Any, Any]:
    app = make_app(THERACHARGE_API_TOKENS=f"ann:admin=sha256:{token_hash('t')}")
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(who="bea", role=role, csrf="form-token")
    return app, client


def _entry(**fields: str) -> dict[str, str]:
    return {"csrf": "form-token", "role": "PTA", "source": "HR file", "reason": "hired"} | fields


def test_an_admin_adds_changes_and_rolls_back_a_practitioner(make_app: Any) -> None:
    app, client = _signed_in(make_app, "admin")
    page = client.get("/admin/practitioners").get_data(as_text=True)
    assert "None listed." in page
    saved = client.post("/admin/practitioners/entry", data=_entry(key="1234567893", name="Dana"))
    assert saved.status_code == 302
    state = app.extensions["theracharge"]
    assert state.settings.practitioners.roles == {"NPI|1234567893": Role.PTA}
    page = client.get("/admin/practitioners").get_data(as_text=True)
    assert "NPI 1234567893" in page
    assert "NPI|1234567893 added: PTA" in page
    changed = client.post(
        "/admin/practitioners/entry", data=_entry(key="1234567893", role="PT", reason="promoted")
    )
    assert changed.status_code == 302
    assert state.settings.practitioners.roles == {"NPI|1234567893": Role.PT}
    back = client.post("/admin/practitioners/rollback", data={"csrf": "form-token", "version": "1"})
    assert back.status_code == 302
    assert state.settings.practitioners.roles == {"NPI|1234567893": Role.PTA}


def test_a_bad_npi_is_refused_naming_the_field_and_nothing_changes(make_app: Any) -> None:
    app, client = _signed_in(make_app, "admin")
    answer = client.post("/admin/practitioners/entry", data=_entry(key="12345"))
    assert answer.status_code == 422
    assert "practitioners" in answer.get_data(as_text=True)
    assert app.extensions["theracharge"].settings.practitioners.roles == {}


def test_a_viewer_reads_the_table_but_cannot_change_it(make_app: Any) -> None:
    _, client = _signed_in(make_app, "viewer")
    page = client.get("/admin/practitioners")
    assert page.status_code == 200
    assert "Save as a new version" not in page.get_data(as_text=True)
    refused = client.post("/admin/practitioners/entry", data=_entry(key="1234567893"))
    assert refused.status_code == 403
