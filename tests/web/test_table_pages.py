"""The pages of every table an admin replaces whole (payer rules, fees, vocabulary,
practitioners, charge outlet) and the audit log: the table in force with its sources, an edit
refused with the API's words and nothing stored, a save in force for the next decision, a diff
between two versions, a rollback; the signed-in session calling the admin API (a change only
with the page's CSRF token); the favicon."""

from __future__ import annotations

import html
from typing import Any

import pytest
import yaml

from plugin.config.tables import TABLES
from plugin.config.tokens import token_hash


def _signed_in(make_app: Any, role: str = "admin") -> tuple[Any, Any]:
    app = make_app(THERACHARGE_API_TOKENS=f"ann:admin=sha256:{token_hash('t')}")
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(who="bea", role=role, csrf="form-token")
    return app, client


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.path)
def test_every_table_has_a_page_reachable_from_the_navigation(make_app: Any, table: Any) -> None:
    _, client = _signed_in(make_app)
    listing = client.get("/admin/tables").get_data(as_text=True)
    assert f'href="/admin/tables/{table.path}"' in listing
    page = client.get(f"/admin/tables/{table.path}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert html.escape(table.title.capitalize()).replace("&#x27;", "&#39;") in text
    assert 'name="content"' in text  # an admin can change it
    nav = text[text.index('<nav aria-label="Main">') : text.index("</nav>")]
    for link in ("/admin/tables", "/admin/audit", "/admin/mappings", "/admin/practitioners"):
        assert f'href="{link}' in nav


def test_the_payer_rules_page_cites_its_sources(make_app: Any) -> None:
    _, client = _signed_in(make_app)
    text = client.get("/admin/tables/payers").get_data(as_text=True)
    assert "Sources cited" in text
    assert "CMS Pub 100-04 ch.5 §20.2" in text


def test_an_invalid_edit_is_refused_with_the_apis_words_and_nothing_is_stored(
    make_app: Any,
) -> None:
    app, client = _signed_in(make_app)
    state = app.extensions["theracharge"]
    page = client.get("/admin/tables/vocabulary").get_data(as_text=True)
    assert "Never changed" in page
    content = yaml.safe_load(yaml.safe_dump(state.store and _shipped(app, "vocabulary")))
    content["measures"]["patterns"]["degrees"] = "(unclosed"
    answer = client.post(
        "/admin/tables/vocabulary",
        data={"csrf": "form-token", "content": yaml.safe_dump(content), "reason": "typo"},
    )
    assert answer.status_code == 422
    said = answer.get_data(as_text=True)
    assert "Not saved" in said
    assert "degrees: not a regular expression" in said
    assert state.store.config_versions("vocabulary", "activities") == []
    not_yaml = client.post(
        "/admin/tables/vocabulary",
        data={"csrf": "form-token", "content": "codes: [unclosed", "reason": "typo"},
    )
    assert not_yaml.status_code == 422
    assert "content: not YAML" in not_yaml.get_data(as_text=True)
    no_reason = client.post(
        "/admin/tables/fees",
        data={"csrf": "form-token", "content": yaml.safe_dump(_shipped(app, "fees")), "reason": ""},
    )
    assert no_reason.status_code == 422
    assert "reason: say why the fee schedule change" in no_reason.get_data(as_text=True)


def _shipped(app: Any, path: str) -> dict[str, Any]:
    state = app.extensions["theracharge"]
    table = next(t for t in TABLES if t.path == path)
    return table.shipped(state.settings)


def test_a_saved_edit_is_in_force_then_compared_and_rolled_back(make_app: Any) -> None:
    app, client = _signed_in(make_app)
    state = app.extensions["theracharge"]
    content = _shipped(app, "vocabulary")
    content["aliases"]["entries"].append({"reads": "perturbation", "written": ["wobbly stance"]})
    saved = client.post(
        "/admin/tables/vocabulary",
        data={"csrf": "form-token", "content": yaml.safe_dump(content), "reason": "our words"},
    )
    assert saved.status_code == 302
    assert state.settings.versions["vocabulary"] == "v1"
    page = client.get("/admin/tables/vocabulary").get_data(as_text=True)
    assert "Saved the documentation vocabulary, version 1" in page or "version 1" in page
    assert "section aliases changed" in page
    diff = client.get("/admin/tables/vocabulary?a=0&b=1").get_data(as_text=True)
    assert "wobbly stance" in diff
    assert 'class="added">+' in diff
    back = client.post(
        "/admin/tables/vocabulary/rollback",
        data={"csrf": "form-token", "version": "1", "reason": "undo"},
    )
    assert back.status_code == 302
    versions = state.store.config_versions("vocabulary", "activities")
    assert [v.version for v in versions] == [2, 1]
    assert versions[0].reason == "rollback to version 1: undo"
    audit = client.get("/admin/audit?object_type=vocabulary").get_data(as_text=True)
    assert "why: our words" in audit
    assert "why: rollback to version 1: undo" in audit
    assert "UTC" in audit


def test_a_viewer_reads_but_cannot_change(make_app: Any) -> None:
    _, client = _signed_in(make_app, "viewer")
    page = client.get("/admin/tables/payers").get_data(as_text=True)
    assert 'name="content"' not in page
    refused = client.post(
        "/admin/tables/payers", data={"csrf": "form-token", "content": "{}", "reason": "x"}
    )
    assert refused.status_code == 403


def test_the_audit_log_shows_the_tables_seeded_by_the_system_and_filters(
    make_app: Any,
) -> None:
    app, client = _signed_in(make_app)
    app.extensions["theracharge"].store.audit("ann", "save", "fees", "fees", {"version": 1})
    everything = client.get("/admin/audit").get_data(as_text=True)
    assert "system" in everything
    assert "imported from the shipped configuration at first start" in everything
    only_ann = client.get("/admin/audit?actor=ann").get_data(as_text=True)
    assert "fees fees" in only_ann
    assert "imported from the shipped configuration" not in only_ann
    nothing = client.get("/admin/audit?actor=ann&since=2999-01-01").get_data(as_text=True)
    assert "No entries match these filters." in nothing


def test_a_signed_in_page_calls_the_admin_api_and_a_change_needs_its_csrf_token(
    make_app: Any,
) -> None:
    app, client = _signed_in(make_app)
    listed = client.get("/admin/api/v1/payers")
    assert listed.status_code == 200
    body = {"reason": "from the page", "payers": listed.json}
    refused = client.put("/admin/api/v1/payers", json=body)
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json["message"]
    accepted = client.put("/admin/api/v1/payers", json=body, headers={"X-CSRF-Token": "form-token"})
    assert accepted.status_code == 200, accepted.json
    (entry, *_) = app.extensions["theracharge"].store.audit_entries(object_type="payers")
    assert entry.actor == "bea"
    _, viewer = _signed_in(make_app, "viewer")
    assert viewer.get("/admin/api/v1/payers").status_code == 200  # reading is every role's
    no_role = viewer.put("/admin/api/v1/payers", json=body, headers={"X-CSRF-Token": "form-token"})
    assert no_role.status_code == 403
    assert "the viewer role cannot do this" in no_role.json["message"]


def test_the_favicon_is_served_and_linked(make_app: Any) -> None:
    _, client = _signed_in(make_app)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.mimetype == "image/svg+xml"
    assert 'rel="icon"' in client.get("/admin/tables").get_data(as_text=True)


def test_a_mapping_page_names_its_target_and_cites_a_source_not_a_file(make_app: Any) -> None:
    _, client = _signed_in(make_app)
    diagnoses = client.get("/admin/mappings/snomed-icd10cm-diagnoses.json").get_data(as_text=True)
    assert "ICD-10-CM code <input" in diagnoses
    assert "CPT/HCPCS code <input" not in diagnoses
    assert "Maps SNOMED CT → ICD-10-CM, kept by TheraCharge." in diagnoses
    therapy = client.get("/admin/mappings/snomed-therapy.json").get_data(as_text=True)
    assert "CPT/HCPCS code <input" in therapy
    assert "TherapyCodes.d.ts" not in therapy
    assert "SNOMED CT International Edition code and display" in therapy
