"""A plan of care's certification read where EHRs record it (fhir_mappings/certification.py):
a signed plan DocumentReference (its authenticator, or a Provenance signature on it), a
Provenance signature on the CarePlan, our extension last; the explanation names the route."""

from __future__ import annotations

from typing import Any

from fhir_mappings.assemble import VisitAssembler
from plugin.config.files import Settings
from plugin.pipeline.stages import decide, translate_tables
from plugin.rules.decision import Decision
from tests import builders

LOINC = "http://loinc.org"
MD = "208100000X"  # physical medicine and rehabilitation physician
PTA = "225200000X"


def _role(actor: str, taxonomy: str) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "id": f"role-{actor.split('/')[1]}",
        "practitioner": {"reference": actor},
        "specialty": [{"coding": [{"system": builders.NUCC, "code": taxonomy}]}],
    }


def _plan_document(
    did: str = "pocdoc1", signer: str | None = "Practitioner/md1", when: str = "2026-10-30",
    plan: str | None = "CarePlan/poc1", status: str = "current",
) -> dict[str, Any]:  # fmt: skip
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": did,
        "status": status,
        "type": {"coding": [{"system": LOINC, "code": "18776-5"}]},
        "subject": {"reference": "Patient/p1"},
        "date": f"{when}T10:00:00-05:00",
        "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/x"}}],
    }
    if signer:
        document["authenticator"] = {"reference": signer}
    if plan:
        document["context"] = {"related": [{"reference": plan}]}
    return document


def _provenance(pid: str, target: str, who: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "id": pid,
        "target": [{"reference": target}],
        "recorded": f"{when}T12:00:00-05:00",
        "agent": [{"who": {"reference": who}}],
        "signature": [
            {
                "type": [
                    {"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.5"}
                ],
                "when": f"{when}T12:00:00-05:00",
                "who": {"reference": who},
            }
        ],
    }


def _decide(settings: Settings, *extra: dict[str, Any], certified: str | None = None) -> Decision:
    """A clean Medicare visit on 2026-11-02 under a plan begun 2026-10-26, certified (our
    extension) only when `certified`; `extra` resources besides."""
    record = builders.complete_record(builders.procedure("p1", "97110", minutes=30))
    record = [r for r in record if r["resourceType"] != "CarePlan"]
    record.append(builders.care_plan(certified=certified))
    assembler = VisitAssembler(translate_tables(settings))
    for resource in [*record, *extra]:
        assembler.add(resource)
    return decide(settings, tuple(assembler.visits()))


def _said(decision: Decision) -> str:
    return " ".join(e.text for e in decision.explanation)


def test_without_any_certification_the_line_is_held(settings: Settings) -> None:
    decision = _decide(settings)
    assert decision.lines[0].status.value == "planned"
    assert "plan-of-care-not-certified" in {f.code for f in decision.findings}


def test_a_plan_document_authenticated_by_a_physician_certifies_the_plan(
    settings: Settings,
) -> None:
    decision = _decide(settings, _plan_document(), _role("Practitioner/md1", MD))
    assert decision.lines[0].status.value == "billable"
    said = "CarePlan/poc1 was certified on 2026-10-30 (DocumentReference/pocdoc1, authenticated by"
    assert f"{said} Practitioner/md1)" in _said(decision)


def test_the_signature_provenance_dates_the_document(settings: Settings) -> None:
    signed = _provenance("sig1", "DocumentReference/pocdoc1", "Practitioner/md1", "2026-10-29")
    document = _plan_document(signer=None, when="2026-10-27")
    decision = _decide(settings, document, signed, _role("Practitioner/md1", MD))
    assert decision.lines[0].status.value == "billable"
    assert "was certified on 2026-10-29 (DocumentReference/pocdoc1" in _said(decision)


def test_a_late_signature_on_the_document_is_a_delayed_certification(settings: Settings) -> None:
    signed = _provenance("sig1", "DocumentReference/pocdoc1", "Practitioner/md1", "2026-12-20")
    document = _plan_document(signer=None, when="2026-10-27")
    decision = _decide(settings, document, signed, _role("Practitioner/md1", MD))
    # 55 days after the first treatment (2026-10-26): 25 after it was due, accepted with a warning
    assert decision.lines[0].status.value == "billable"
    assert "plan-of-care-certified-late" in {f.code for f in decision.findings}


def test_an_unlinked_plan_document_certifies_the_plan_whose_period_it_falls_in(
    settings: Settings,
) -> None:
    inside = _plan_document(plan=None, when="2026-10-30")
    decision = _decide(settings, inside, _role("Practitioner/md1", MD))
    assert decision.lines[0].status.value == "billable"
    before = _plan_document(plan=None, when="2026-10-20")  # before the plan began
    assert _decide(settings, before, _role("Practitioner/md1", MD)).lines[0].status.value == (
        "planned"
    )


def test_a_superseded_plan_document_does_not_certify(settings: Settings) -> None:
    old = _plan_document(status="superseded")
    assert _decide(settings, old, _role("Practitioner/md1", MD)).lines[0].status.value == "planned"


def test_a_site_that_reads_only_the_extension_ignores_documents(settings: Settings) -> None:
    import dataclasses

    episode = dataclasses.replace(settings.episode, certification_routes=("extension",))
    only = dataclasses.replace(settings, episode=episode)
    decision = _decide(only, _plan_document(), _role("Practitioner/md1", MD))
    assert decision.lines[0].status.value == "planned"


def test_a_malformed_signature_is_named_on_the_plans_finding(settings: Settings) -> None:
    broken = _provenance("sig9", "CarePlan/poc1", "Practitioner/md1", "2026-10-28")
    broken["signature"] = "signed"
    del broken["agent"]
    decision = _decide(settings, broken, _role("Practitioner/md1", MD))
    (finding,) = [f for f in decision.findings if f.code == "plan-of-care-not-certified"]
    assert "Provenance/sig9.signature is not a list of objects" in finding.message


def test_a_document_signed_by_an_assistant_does_not_certify(settings: Settings) -> None:
    decision = _decide(
        settings, _plan_document(signer="Practitioner/pta1"), _role("Practitioner/pta1", PTA)
    )
    assert decision.lines[0].status.value == "planned"


def test_a_provenance_signature_on_the_careplan_certifies_it(settings: Settings) -> None:
    signed = _provenance("sig2", "CarePlan/poc1", "Practitioner/md1", "2026-10-28")
    decision = _decide(settings, signed, _role("Practitioner/md1", MD))
    assert decision.lines[0].status.value == "billable"
    assert "signed on a Provenance by Practitioner/md1" in _said(decision)


def test_the_extension_is_the_last_route(settings: Settings) -> None:
    decision = _decide(settings, certified="2026-10-28")
    assert decision.lines[0].status.value == "billable"
    assert "the certification extension on the CarePlan" in _said(decision)


def _order(signed: str, requester: str = "Practitioner/md1") -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": "referral1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "code": {"text": "Physical therapy evaluation and treatment"},
        "requester": {"reference": requester},
        "authoredOn": signed,
    }


def _sent(when: str, about: str = "CarePlan/poc1", to: str = "Practitioner/md1") -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "id": "sent1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "about": [{"reference": about}],
        "recipient": [{"reference": to}],
        "sent": f"{when}T09:00:00-05:00",
    }


def test_a_signed_order_and_the_plan_sent_to_its_signer_stand_for_the_certification(
    settings: Settings,
) -> None:
    md = _role("Practitioner/md1", MD)
    decision = _decide(settings, _order("2026-10-20"), _sent("2026-10-29"), md)
    assert decision.lines[0].status.value == "billable"
    said = _said(decision)
    assert "certified on 2026-10-29 (ServiceRequest/referral1 signed by Practitioner/md1" in said
    assert "the plan sent to them by Communication/sent1" in said


def test_the_order_route_needs_the_order_before_the_plan_and_the_plan_sent_to_its_signer(
    settings: Settings,
) -> None:
    md = _role("Practitioner/md1", MD)
    after = _decide(settings, _order("2026-10-27"), _sent("2026-10-29"), md)  # after the plan
    assert after.lines[0].status.value == "planned"
    elsewhere = _decide(
        settings, _order("2026-10-20"), _sent("2026-10-29", to="Practitioner/x"), md
    )
    assert elsewhere.lines[0].status.value == "planned"
    pta = _role("Practitioner/pta1", PTA)  # an assistant cannot order or certify
    by_assistant = _order("2026-10-20", "Practitioner/pta1")
    sent = _sent("2026-10-29", to="Practitioner/pta1")
    assert _decide(settings, by_assistant, sent, pta).lines[0].status.value == "planned"
