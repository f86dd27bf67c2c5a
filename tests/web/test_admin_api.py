"""The admin API: managed tables seeded from config/, versioned, validated whole, audited."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from plugin.config.tokens import token_hash
from tests.helpers.hooks import hook_body

TOKENS = ",".join(
    [
        f"ann:admin=sha256:{token_hash('admin-token')}",
        f"bill=sha256:{token_hash('billing-token')}",
        f"val:viewer=sha256:{token_hash('viewer-token')}",
    ]
)
ADMIN = {"Authorization": "Bearer admin-token"}
VIEWER = {"Authorization": "Bearer viewer-token"}
SNOMED = "http://snomed.info/sct"
LOCAL = "local-example-ehr.json"


@pytest.fixture
def app(make_app) -> Any:
    return make_app(THERACHARGE_API_TOKENS=TOKENS, THERACHARGE_CDS_AUTH="disabled")


def local_map(client: Any) -> dict[str, Any]:
    return copy.deepcopy(client.get(f"/admin/api/v1/mappings/{LOCAL}", headers=VIEWER).json)


def try_code(client: Any, system: str, code: str) -> Any:
    return client.post(
        "/admin/api/v1/mappings/try",
        json={"coding": {"system": system, "code": code}},
        headers=VIEWER,
    ).json


def test_the_first_start_imports_config_as_version_1(app, make_app) -> None:
    client = app.test_client()
    tables = client.get("/admin/api/v1/mappings", headers=VIEWER).json
    assert [(t["name"], t["version"], t["author"]) for t in tables] == [
        ("local-example-ehr.json", 1, "system"),
        ("snomed-icd10cm-diagnoses.json", 1, "system"),
        ("snomed-therapy.json", 1, "system"),
    ]
    assert client.get("/admin/api/v1/payers", headers=VIEWER).headers["ETag"] == 'W/"1"'
    again = make_app(THERACHARGE_API_TOKENS=TOKENS).test_client()  # a restart: no second import
    assert [t["version"] for t in again.get("/admin/api/v1/mappings", headers=VIEWER).json] == [
        1,
        1,
        1,
    ]


def test_roles_guard_every_change(app) -> None:
    client = app.test_client()
    assert client.get("/admin/api/v1/mappings").status_code == 401
    assert (
        client.get("/admin/api/v1/mappings", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    body = {"reason": "x", "conceptMap": local_map(client)}
    assert (
        client.put(f"/admin/api/v1/mappings/{LOCAL}", json=body, headers=VIEWER).status_code == 403
    )
    billing = {"Authorization": "Bearer billing-token"}
    assert (
        client.put(f"/admin/api/v1/mappings/{LOCAL}", json=body, headers=billing).status_code == 403
    )


def test_an_invalid_table_is_422_naming_the_entry_and_nothing_changes(app) -> None:
    client = app.test_client()
    table = local_map(client)
    table["group"][0]["element"][0]["target"][0]["code"] = "99999"
    table["group"][0]["element"][1]["target"][0]["code"] = "97000"
    answer = client.put(
        f"/admin/api/v1/mappings/{LOCAL}",
        json={"reason": "typo", "conceptMap": table},
        headers=ADMIN,
    )
    assert answer.status_code == 422
    assert (
        answer.json["fields"]["conceptMap.group[0].element[0].target[0].code"]
        == "99999 is not in the code catalog"
    )
    assert "conceptMap.group[0].element[1].target[0].code" in answer.json["fields"]  # every one
    del table["group"][0]["element"][1]["target"][0]["comment"]
    shape = client.put(
        f"/admin/api/v1/mappings/{LOCAL}", json={"reason": "x", "conceptMap": table}, headers=ADMIN
    )
    assert "conceptMap.group[0].element[1].target[0].comment" in shape.json["fields"]
    assert client.get(f"/admin/api/v1/mappings/{LOCAL}", headers=VIEWER).headers["ETag"] == 'W/"1"'
    no_reason = client.put(
        f"/admin/api/v1/mappings/{LOCAL}", json={"conceptMap": local_map(client)}, headers=ADMIN
    )
    assert (no_reason.status_code, no_reason.json["fields"]) == (422, {"reason": "required"})


def test_a_code_mapped_in_two_tables_is_refused(app) -> None:
    client = app.test_client()
    table = local_map(client)
    table["group"][0]["source"] = SNOMED  # now claims SNOMED codes the other table maps
    table["group"][0]["element"][0]["code"] = "61502001"
    answer = client.put(
        f"/admin/api/v1/mappings/{LOCAL}", json={"reason": "x", "conceptMap": table}, headers=ADMIN
    )
    assert answer.status_code == 422
    assert "already mapped" in answer.json["message"]


def test_a_change_is_a_new_version_with_its_diff_used_at_once_and_can_be_rolled_back(app) -> None:
    client = app.test_client()
    assert try_code(client, SNOMED, "229615004")["how"] == "unmapped"
    table = local_map(client)
    table["group"].append(
        {
            "source": SNOMED,
            "target": "http://www.ama-assn.org/go/cpt",
            "element": [
                {
                    "code": "229615004",
                    "display": "Prosthetic gait re-education",
                    "target": [
                        {
                            "code": "97116",
                            "equivalence": "wider",
                            "comment": "site decision, ticket 42",
                        }
                    ],
                }
            ],
        }
    )
    saved = client.put(
        f"/admin/api/v1/mappings/{LOCAL}",
        json={"reason": "prosthetic gait", "conceptMap": table},
        headers={**ADMIN, "If-Match": 'W/"1"'},
    )
    assert saved.json == {"kind": "mapping", "name": LOCAL, "version": 2}
    found = try_code(client, SNOMED, "229615004")
    assert (found["code"], found["how"], found["mapping"]["comment"]) == (
        "97116",
        "mapped",
        "site decision, ticket 42",
    )
    latest = client.get(f"/admin/api/v1/mappings/{LOCAL}/versions", headers=VIEWER).json[0]
    assert (latest["version"], latest["author"], latest["reason"]) == (2, "ann", "prosthetic gait")
    assert latest["diff"] == [
        {"change": "added", "source": f"{SNOMED}|229615004", "before": None, "after": "97116"}
    ]
    stale = client.put(
        f"/admin/api/v1/mappings/{LOCAL}",
        json={"reason": "x", "conceptMap": table},
        headers={**ADMIN, "If-Match": 'W/"1"'},
    )
    assert stale.status_code == 409
    back = client.post(
        f"/admin/api/v1/mappings/{LOCAL}/rollback",
        json={"version": 1, "reason": "undo"},
        headers=ADMIN,
    )
    assert back.json["version"] == 3
    assert try_code(client, SNOMED, "229615004")["how"] == "unmapped"
    v1 = client.get(f"/admin/api/v1/mappings/{LOCAL}/versions/1", headers=VIEWER).json["content"]
    assert client.get(f"/admin/api/v1/mappings/{LOCAL}", headers=VIEWER).json == v1


def test_a_deleted_table_stops_mapping_and_keeps_its_history(app) -> None:
    client = app.test_client()
    assert (
        try_code(
            client, "https://ehr.example.org/fhir/CodeSystem/therapy-charge-codes", "PT-THEREX"
        )["code"]
        == "97110"
    )
    assert (
        client.delete(f"/admin/api/v1/mappings/{LOCAL}?reason=retired", headers=ADMIN).status_code
        == 200
    )
    assert [t["name"] for t in client.get("/admin/api/v1/mappings", headers=VIEWER).json] == [
        "snomed-icd10cm-diagnoses.json",
        "snomed-therapy.json",
    ]
    assert client.get(f"/admin/api/v1/mappings/{LOCAL}", headers=VIEWER).status_code == 404
    assert (
        try_code(
            client, "https://ehr.example.org/fhir/CodeSystem/therapy-charge-codes", "PT-THEREX"
        )["how"]
        == "unmapped"
    )
    versions = client.get(f"/admin/api/v1/mappings/{LOCAL}/versions", headers=VIEWER).json
    assert [(v["version"], v["deleted"]) for v in versions] == [(2, True), (1, False)]


def test_payer_rules_are_validated_versioned_and_drive_the_method(app) -> None:
    client = app.test_client()
    payers = client.get("/admin/api/v1/payers", headers=VIEWER).json
    bad = copy.deepcopy(payers)
    bad["payers"][0]["gap_severity"] = {"no-such-gap": "hold"}
    refused = client.put("/admin/api/v1/payers", json={"reason": "x", "payers": bad}, headers=ADMIN)
    assert refused.status_code == 422
    assert "payers[0].gap_severity.no-such-gap" in refused.json["message"]
    medicare_visit = client.post("/cds-services/therapy-charges", json=hook_body()).json
    assert medicare_visit["cards"][0]["summary"].startswith("Charges (CMS)")
    payers["payers"][0]["method"] = "ama"
    saved = client.put(
        "/admin/api/v1/payers", json={"reason": "contract change", "payers": payers}, headers=ADMIN
    )
    assert saved.json["version"] == 2
    (latest, _) = client.get("/admin/api/v1/payers/versions", headers=VIEWER).json
    assert latest["diff"] == [{"change": "changed", "payer": "medicare-part-b"}]
    now_ama = client.post("/cds-services/therapy-charges", json=hook_body()).json
    assert now_ama["cards"][0]["summary"].startswith("Charges (AMA)")
    back = client.post(
        "/admin/api/v1/payers/rollback", json={"version": 1, "reason": "undo"}, headers=ADMIN
    )
    assert back.json["version"] == 3
    cms_again = client.post("/cds-services/therapy-charges", json=hook_body()).json
    assert cms_again["cards"][0]["summary"].startswith("Charges (CMS)")


def test_a_payers_modifier_policy_drops_the_plan_of_care_modifier(app) -> None:
    client = app.test_client()
    clean = {"hook": "encounter-discharge", "hookInstance": "x"} | {
        k: v for k, v in hook_body().items() if k in ("context", "prefetch")
    }
    procedures = clean["prefetch"]["procedures"]["entry"]
    procedures[:] = [e for e in procedures if e["resource"]["id"] != "p3"]  # nothing held
    assert (
        "97110-GP ×2"
        in client.post("/cds-services/therapy-charges", json=clean).json["cards"][0]["summary"]
    )
    payers = client.get("/admin/api/v1/payers", headers=VIEWER).json
    payers["payers"][0]["modifiers"] = {"plan_of_care": False}
    client.put(
        "/admin/api/v1/payers", json={"reason": "payer contract", "payers": payers}, headers=ADMIN
    )
    summary = client.post("/cds-services/therapy-charges", json=clean).json["cards"][0]["summary"]
    assert summary == "Charges (CMS): 97110 ×2, 97140 ×1"


def test_the_audit_log_names_who_changed_what(app) -> None:
    client = app.test_client()
    client.put(
        f"/admin/api/v1/mappings/{LOCAL}",
        json={"reason": "same again", "conceptMap": local_map(client)},
        headers=ADMIN,
    )
    entries = client.get("/admin/api/v1/audit?actor=ann&object_type=mapping", headers=VIEWER).json
    assert [(e["action"], e["object_id"], e["detail"]["reason"]) for e in entries] == [
        ("save", LOCAL, "same again")
    ]
    assert client.get("/admin/api/v1/audit?since=yesterday", headers=VIEWER).status_code == 400
    for since, found in (
        ("2000-01-01T00:00:00Z", 1),
        ("0001-01-01T00:00:00", 1),
        ("9999-12-31T23:59:59", 0),
    ):
        window = f"/admin/api/v1/audit?actor=ann&object_type=mapping&since={since}"
        assert len(client.get(window, headers=VIEWER).json) == found, since  # zone or none


def test_the_notification_worker_decides_with_the_managed_tables(app) -> None:
    state = app.extensions["theracharge"]
    assert (
        state.worker.runtime.current() is state.settings
    )  # from the start, not the file-based ones
    client = app.test_client()
    payers = client.get("/admin/api/v1/payers", headers=VIEWER).json
    payers["default_method"] = "ama"
    client.put(
        "/admin/api/v1/payers",
        json={"reason": "default per contract", "payers": payers},
        headers=ADMIN,
    )
    assert state.worker.runtime.current().payers.default_method.value == "ama"
    assert state.worker.runtime.current() is state.settings


def test_the_outlet_table_is_validated_versioned_and_used_by_the_next_run(app) -> None:
    client = app.test_client()
    outlet = client.get("/admin/api/v1/outlet", headers=VIEWER).json
    assert outlet["hl7v2"]["version"] == "2.5.1"
    bad = copy.deepcopy(outlet)
    bad["hl7v2"]["version"] = "2.3"  # with FT1-26, which 2.3 does not have
    refused = client.put("/admin/api/v1/outlet", json={"reason": "x", "outlet": bad}, headers=ADMIN)
    assert refused.status_code == 422
    assert "hl7v2.modifiers" in refused.json["message"]
    outlet["hl7v2"]["version"] = "2.3.1"
    saved = client.put(
        "/admin/api/v1/outlet",
        json={"reason": "interface spec v3", "outlet": outlet},
        headers=ADMIN,
    )
    assert saved.json["version"] == 1  # the first stored version: the shipped file before it
    (latest,) = client.get("/admin/api/v1/outlet/versions", headers=VIEWER).json
    assert latest["diff"] == [
        {"change": "changed", "setting": "hl7v2.version", "before": "2.5.1", "after": "2.3.1"}
    ]
    state = app.extensions["theracharge"]
    assert state.current().outlet_site.hl7v2.version == "2.3.1"  # what the next message uses
    outlet["hl7v2"]["credit"] = "negative"
    client.put("/admin/api/v1/outlet", json={"reason": "CG-", "outlet": outlet}, headers=ADMIN)
    assert state.current().outlet_site.hl7v2.credit == "negative"
    client.post(
        "/admin/api/v1/outlet/rollback", json={"version": 1, "reason": "undo"}, headers=ADMIN
    )
    assert state.current().outlet_site.hl7v2.credit == "CD"
    assert client.get("/admin/api/v1/outlet/messages", headers=VIEWER).status_code == 403
    assert client.get("/admin/api/v1/outlet/messages", headers=ADMIN).json == []
