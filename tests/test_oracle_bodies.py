"""The Oracle Health outlet's request bodies with `responses` standing for Millennium, field by
field against the shapes Oracle's pages publish (Create a modified charge item: the whole item
with `replacing` and `item-version`; Credit a charge item: `versionId`, `transactionId`,
`subject`, `context`)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import responses

from plugin.config.files import load_settings
from plugin.gateway.client import FhirClient
from plugin.gateway.gather import Gatherer
from plugin.outlets import outlet_for
from plugin.pipeline.billing_day import DaySource, WriteMode, run_day
from plugin.store import Store
from tests import builders
from tests.helpers.hooks import serve_encounter_day

BASE = "https://millennium.example.org/r4/tenant-1"
WHEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))
EXT = "https://fhir-ehr.cerner.com/r4/StructureDefinition/"
SITE = """oracle_health:
  tenant: tenant-1
  schedules: {CPT: "1", HCPCS: "2", ICD: "3", MODIFIER: "4"}
"""


def _ehr(minutes: int | None, items: list[dict[str, Any]]) -> None:
    record = builders.complete_record(builders.procedure("p1", "97110", minutes=minutes))
    serve_encounter_day(BASE, [*record, *items])


def _run(tmp_path: Path, store: Store) -> Any:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "outlet.yaml").write_text(SITE)
    settings = load_settings(
        {
            "THERACHARGE_INSTANCE_DIR": str(tmp_path),
            "THERACHARGE_CONFIG_DIR": str(site),
            "THERACHARGE_OUTLET": "oracle-health",
            "THERACHARGE_FHIR_BASE_URL": BASE,
        }
    )
    client = FhirClient(BASE)
    source = DaySource(Gatherer(client), None, ("Patient/p1", "2026-11-02"))
    outlet = outlet_for(settings, client, store)
    return run_day(settings, "e1", source, WriteMode.WRITE, WHEN, "t", outlet=outlet)


def _posted(path: str) -> dict[str, Any]:
    (call,) = [c for c in responses.calls if c.request.url.endswith(path)]
    return dict(json.loads(call.request.body))


@responses.activate
def test_modify_and_credit_bodies_field_by_field(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'o.db'}")
    store.migrate()
    _ehr(30, [])
    responses.post(f"{BASE}/ChargeItem/$create", status=200, body=b"")
    made = {
        "resourceType": "ChargeItem",
        "id": "321088041",
        "meta": {"versionId": "1"},
        "status": "billable",
        "context": {"reference": "Encounter/e1"},
    }
    sent: dict[str, Any] = {}

    def found(request: Any) -> tuple[int, dict[str, str], str]:
        """The context search after $create: the item made of what was sent, with its id."""
        body = _posted("$create")["parameter"][1]["resource"]
        sent.update(body)
        item = {**body, **made}
        return 200, {}, json.dumps({"resourceType": "Bundle", "entry": [{"resource": item}]})

    responses.add_callback(responses.GET, f"{BASE}/ChargeItem", callback=found)
    _run(tmp_path, store)
    assert sent["status"] == "unknown"
    responses.reset()
    _ehr(45, [{**sent, **made, "meta": {"versionId": "3"}}])  # three units; version 3 now
    responses.post(
        f"{BASE}/ChargeItem/321088041/$modify",
        status=201,
        headers={"Location": f"{BASE}/ChargeItem/321088099/_history/1"},
        body=b"",
    )
    _run(tmp_path, store)
    modify = _posted("321088041/$modify")
    assert modify["resourceType"] == "Parameters"
    assert [p["name"] for p in modify["parameter"]] == ["transactionId", "chargeItem"]
    assert modify["parameter"][0]["valueUuid"].startswith("urn:uuid:")
    item = modify["parameter"][1]["resource"]
    assert item["quantity"] == {"value": 3}
    (replacing,) = [e for e in item["extension"] if e["url"] == EXT + "replacing"]
    assert replacing == {
        "url": EXT + "replacing",
        "valueReference": {"reference": "ChargeItem/321088041"},
        "extension": [{"url": "item-version", "valueString": "3"}],
    }
    responses.reset()
    new = {**item, "id": "321088099", "meta": {"versionId": "1"}, "status": "billable"}
    new["extension"] = [e for e in item["extension"] if e["url"] != EXT + "replacing"]
    _ehr(None, [new])  # the minutes gone: the line is held
    responses.post(
        f"{BASE}/ChargeItem/321088099/$credit",
        status=201,
        headers={"Location": f"{BASE}/ChargeItem/321088100/_history/1"},
        body=b"",
    )
    _run(tmp_path, store)
    credit = _posted("321088099/$credit")
    assert [p["name"] for p in credit["parameter"]] == [
        "versionId", "transactionId", "subject", "context"
    ]  # fmt: skip
    values = {p["name"]: p for p in credit["parameter"]}
    assert values["versionId"]["valueString"] == "1"
    assert values["subject"]["valueReference"] == {"reference": "Patient/p1"}
    assert values["context"]["valueReference"] == {"reference": "Encounter/e1"}
