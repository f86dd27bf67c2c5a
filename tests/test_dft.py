"""DFT^P03 messages field by field (HL7 v2.5.1 Ch. 2, 3, 6), each version's structure checked
by hl7apy, the site's choices (version, credit style, modifier placement, charge master), the
ACK's words, and the outlet's settings refused when missing or contradictory."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hl7
import pytest

from plugin.config.files import load_settings
from plugin.outlets.dft import MessageInvalid, Posting, line_content, message, validate
from plugin.outlets.hl7v2 import parse_ack
from plugin.pipeline.billing_day import decide_gathered
from plugin.rules.decision import Decision
from plugin.rules.systems import IDENTIFIER_TYPE, NPI
from plugin.schemas.errors import ConfigError
from plugin.schemas.outlet import Hl7Site
from tests import builders

AT = datetime(2026, 11, 2, 17, 30, tzinfo=UTC)
KEY = "Patient/p1/2026-11-02/PT/Organization/clinic/97110"
MR = {"system": IDENTIFIER_TYPE, "code": "MR"}
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def _decision() -> Decision:
    """A Medicare PT visit: 30 minutes of 97110 (two units, GP), the patient with an MRN and a
    name, the encounter with a visit number, the therapist with an NPI."""
    record = builders.complete_record(builders.procedure("p1", "97110", minutes=30))
    record[0]["participant"] = [
        {
            "type": [{"coding": [{"system": PARTICIPATION, "code": "REF"}]}],
            "individual": {"reference": "Practitioner/md1"},
        }
    ]
    record[0]["identifier"] = [
        {"type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "VN"}]}, "value": "V-20261102-7"}
    ]
    record += [
        {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [
                {
                    "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "MR"}]},
                    "value": "MRN0042",
                }
            ],
            "name": [{"use": "official", "family": "Rivera", "given": ["Ana", "M"]}],
        },
        {
            "resourceType": "Practitioner",
            "id": "pt1",
            "identifier": [{"system": NPI, "value": "1234567893"}],
        },
        {  # the physician who referred the patient
            "resourceType": "Practitioner",
            "id": "md1",
            "identifier": [{"system": NPI, "value": "1679576722"}],
        },
    ]
    return decide_gathered(load_settings({}), record, "e1")


def _segments(text: str) -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for segment in text.split("\r"):
        fields = segment.split("|")
        found.setdefault(fields[0], []).append(fields)
    return found


def test_a_two_unit_97110_gp_line_field_by_field() -> None:
    decision = _decision()
    (line,) = decision.lines
    assert (line.key, line.units, line.modifiers) == (KEY, 2, ("GP",))
    shipped = load_settings({}).outlet_site.hl7v2
    site = dataclasses.replace(shipped, locations={"11": "PT-CLINIC"})
    charge = Posting(line.key, "Patient/p1/2026-11-02", False, line_content(line, decision, site))
    text = message(site, decision, [charge], "TC0001", AT)
    seg = _segments(text)
    msh = seg["MSH"][0]
    # MSH-1 is the separator itself: field n is at index n - 1 of the split header
    assert msh[2:6] == ["THERACHARGE", "THERAPY", "BILLING", "HOSPITAL"]
    assert (msh[6], msh[8], msh[9], msh[10], msh[11]) == (
        "20261102173000", "DFT^P03^DFT_P03", "TC0001", "P", "2.5.1"
    )  # fmt: skip
    assert seg["EVN"][0][1] == "P03"
    pid = seg["PID"][0]
    assert pid[3] == "MRN0042^^^^MR"
    assert pid[5] == "Rivera^Ana M"
    pv1 = seg["PV1"][0]
    assert (pv1[2], pv1[3], pv1[19]) == ("O", "PT-CLINIC", "V-20261102-7^^^^VN")
    (ft1,) = seg["FT1"]
    assert ft1[1] == "1"
    assert ft1[2] == KEY
    assert ft1[4] == "20261102"
    assert ft1[6] == "CG"
    assert ft1[7] == "97110^Therapeutic exercise^C4"
    assert ft1[10] == "2"
    assert ft1[16] == "PT-CLINIC"
    assert ft1[19] == "M25.561^^I10"
    assert ft1[20] == "1234567893^^^^^^^^NPI^^^^NPI"
    assert ft1[21] == "1679576722^^^^^^^^NPI^^^^NPI"  # the referring physician
    assert ft1[25] == "97110^Therapeutic exercise^C4"
    assert ft1[26] == "GP"
    assert seg["DG1"] == [["DG1", "1", "", "M25.561^^I10", "", "", "F"]]


@pytest.mark.parametrize(
    ("version", "modifiers", "credit", "expected"),
    [
        ("2.5.1", "FT1-26", "CD", ("CD", "2", "97110^Therapeutic exercise^C4", "GP")),
        ("2.3.1", "FT1-26", "negative", ("CG", "-2", "97110^Therapeutic exercise^C4", "GP")),
        ("2.3", "FT1-25.4", "CD", ("CD", "2", "97110^Therapeutic exercise^C4^GP", None)),
        ("2.3", "FT1-7-suffix", "CD", ("CD", "2", "97110^Therapeutic exercise^C4", None)),
    ],
)
def test_each_version_and_site_style_is_a_valid_message(
    version: str, modifiers: str, credit: str, expected: tuple[Any, ...]
) -> None:
    decision = _decision()
    (line,) = decision.lines
    site = Hl7Site(version=version, modifiers=modifiers, credit=credit)
    content = line_content(line, decision, site)
    credit_posting = Posting(line.key, "d", True, content)
    text = message(site, decision, [credit_posting], "TC0002", AT)  # validated inside
    (ft1,) = _segments(text)["FT1"]
    kind, units, procedure, ft1_26 = expected
    assert (ft1[6], ft1[10], ft1[25]) == (kind, units, procedure)
    assert (ft1[26] if len(ft1) > 26 else None) == ft1_26
    if modifiers == "FT1-7-suffix":
        assert ft1[7].split("^")[0] == "97110-GP"
    assert _segments(text)["MSH"][0][11] == version


def test_the_charge_master_code_goes_in_ft1_7_modifier_specific_first() -> None:
    decision = _decision()
    (line,) = decision.lines
    site = Hl7Site(charge_code="cdm", cdm={"97110": "4100110", "97110-GP": "4100111"})
    content = line_content(line, decision, site)
    assert (content["charge_code"], content["charge_system"]) == ("4100111", "99CDM")
    without = Hl7Site(charge_code="cdm", cdm={"97112": "4100112"})
    assert line_content(line, decision, without)["charge_code"] == ""  # not sendable: held


def test_a_message_that_breaks_its_versions_structure_is_never_sent() -> None:
    decision = _decision()
    (line,) = decision.lines
    wrong = Hl7Site(version="2.3", modifiers="FT1-26")  # FT1-26 does not exist in 2.3
    posting = Posting(line.key, "d", False, line_content(line, decision, wrong))
    with pytest.raises(MessageInvalid, match="does not fit HL7 v2 structure"):
        message(wrong, decision, [posting], "TC0003", AT)
    with pytest.raises(MessageInvalid):
        validate("MSH|^~\\&|A|B|C|D|20261102||DFT^P03^DFT_P03|X|P|2.5.1\rPID|1||M^^^^MR||N")


def test_delimiters_in_values_are_escaped() -> None:
    decision = _decision()
    (line,) = decision.lines
    site = Hl7Site(locations={"11": "PT|ROOM^2"})
    content = line_content(line, decision, site)
    text = message(site, decision, [Posting(line.key, "d", False, content)], "TC0004", AT)
    (ft1,) = _segments(text)["FT1"]
    assert ft1[16] == "PT\\F\\ROOM\\S\\2"
    assert hl7.parse(text).segment("FT1")[16][0] == "PT\\F\\ROOM\\S\\2"


def test_an_ack_says_its_code_the_control_id_and_the_receivers_words() -> None:
    ack = parse_ack(
        "MSH|^~\\&|PBS|H|TC|T|20261102||ACK^P03|A1|P|2.5.1\r"
        "MSA|AE|TC0009|Charge rejected\r"
        "ERR|^^^207&Application internal error&HL70357|||E||||Unknown CDM code 4100111"
    )
    assert (ack.code, ack.control_id) == ("AE", "TC0009")
    assert ack.text == "Charge rejected; Unknown CDM code 4100111"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"THERACHARGE_INSTANCE_DIR": str(tmp_path), "THERACHARGE_OUTLET": "hl7v2", **extra}


def test_the_outlets_settings_are_refused_when_missing_or_contradictory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="THERACHARGE_HL7_HOST, THERACHARGE_HL7_PORT: needed"):
        load_settings(_env(tmp_path))
    with pytest.raises(ConfigError, match="THERACHARGE_HL7_PORT: 'x'"):
        load_settings(_env(tmp_path, THERACHARGE_HL7_HOST="h", THERACHARGE_HL7_PORT="x"))
    with pytest.raises(ConfigError, match="system-actions proposes FHIR ChargeItems"):
        load_settings(
            _env(
                tmp_path,
                THERACHARGE_HL7_HOST="h",
                THERACHARGE_HL7_PORT="2575",
                THERACHARGE_WRITE_MODE="system-actions",
            )
        )
    with pytest.raises(ConfigError, match="THERACHARGE_OUTLET: 'epic'"):
        load_settings(_env(tmp_path, THERACHARGE_OUTLET="epic"))
    site = tmp_path / "site"
    site.mkdir()
    (site / "outlet.yaml").write_text("hl7v2:\n  version: '2.3'\n")  # FT1-26 by default
    with pytest.raises(ConfigError, match=r"outlet.yaml: .*hl7v2.modifiers.*FT1-26 does not"):
        load_settings(
            {"THERACHARGE_INSTANCE_DIR": str(tmp_path), "THERACHARGE_CONFIG_DIR": str(site)}
        )


def test_the_shipped_outlet_table_is_the_default_site() -> None:
    settings = load_settings({})
    assert settings.outlet.kind == "fhir"
    assert dataclasses.replace(settings.outlet_site.hl7v2, sending_facility="") == Hl7Site(
        receiving_application="BILLING", receiving_facility="HOSPITAL"
    )


def test_an_assistants_npi_is_never_the_rendering_provider() -> None:
    """A CQ/CO line goes under the supervising therapist's NPI (Pub 100-02 ch.15 §230.1 B);
    when that NPI is not known, FT1-20 is left empty rather than naming the assistant."""
    from msgspec.structs import replace

    from plugin.rules.visit import Role

    decision = _decision()
    (line,) = decision.lines
    (service,) = line.services
    (performer,) = service.performers
    assistant = replace(performer, role=Role.PTA)
    pta_line = replace(line, services=(replace(service, performers=(assistant,)),))
    site = load_settings({}).outlet_site.hl7v2
    assert line_content(line, decision, site)["rendering"] == "1234567893"
    assert line_content(pta_line, decision, site)["rendering"] == ""
