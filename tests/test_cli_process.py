"""`theracharge process` and `theracharge sample`: outputs, errors, nothing half-written."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from plugin.commands import main as cli

FIXTURES = Path(__file__).parent / "fixtures" / "visits"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def sample(tmp_path: Path, name: str, *args: str) -> Path:
    path = tmp_path / name
    assert cli.main(["sample", "--out", str(path), *args]) == 0
    return path


def test_process_writes_the_transaction_and_the_report(tmp_path: Path, capsys) -> None:
    out, report = tmp_path / "out.json", tmp_path / "report.json"
    code, _, err = run(
        capsys,
        "process",
        "--bundle",
        str(FIXTURES / "medicare-cms-example-3.json"),
        "--out",
        str(out),
        "--report",
        str(report),
    )
    assert (code, err) == (0, "")
    bundle = json.loads(out.read_text())
    assert bundle["type"] == "transaction"
    kinds = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    assert kinds == {"ChargeItem": 3, "Provenance": 1}
    body = json.loads(report.read_text())
    assert body["summary"]["lines_by_status"] == {"billable": 3}
    assert body["encounters"][0]["encounter"] == "Encounter/ex3"


def test_process_reads_ndjson_and_prints_a_text_summary(tmp_path: Path, capsys) -> None:
    data = sample(tmp_path, "visits.ndjson", "--visits", "30", "--seed", "4")
    code, out, err = run(capsys, "process", "--bundle", str(data), "--format", "text")
    assert (code, out) == (0, "")
    assert "visits: 30" in err
    assert "charge lines:" in err
    assert "Encounter/enc-0001" in err


def test_process_reads_stdin(monkeypatch, capsys) -> None:
    data = (FIXTURES / "commercial-ama.json").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _ = run(capsys, "process", "--bundle", "-", "--report", "-")
    assert code == 0
    lines = json.loads(out)["encounters"][0]["lines"]
    assert [(ln["code"], ln["units"], ln["status"]) for ln in lines] == [
        ("97110", 2, "billable"),
        ("97140", 0, "not-billable"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"hello": "world"}', "not a FHIR resource (no resourceType)"),
        (
            b'{"resourceType": "Bundle", "type": "collection",'
            b' "entry": [{"resource": {"id": "x"}}]}',
            "Bundle.entry[0].resource: not a FHIR resource",
        ),
        (
            b'{"resourceType": "Encounter", "id": "a"}\n'
            b'{"resourceType": "Procedure", "id": "b"}\n{oops}\n',
            "line 3: not valid JSON",
        ),
        (b'{"resourceType": "Encounter", "id": "a"}\n[1, 2]\n', "line 2: not a FHIR resource"),
        (b"", "empty input"),
    ],
)
def test_bad_input_exits_2_naming_file_and_position_and_writes_nothing(
    tmp_path: Path, capsys, content: bytes, message: str
) -> None:
    source = tmp_path / "input.json"
    source.write_bytes(content)
    out, report = tmp_path / "out.json", tmp_path / "report.json"
    code, stdout, err = run(
        capsys, "process", "--bundle", str(source), "--out", str(out), "--report", str(report)
    )
    assert (code, stdout) == (2, "")
    assert str(source) in err
    assert message in err
    assert not out.exists()
    assert not report.exists()
    assert list(tmp_path.iterdir()) == [source]  # no temporary files left behind


def test_a_failed_run_leaves_an_earlier_output_untouched(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.json"
    out.write_text("earlier run")
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"resourceType": "Encounter", "id": "a"}\nnope\n')
    code, _, _ = run(capsys, "process", "--bundle", str(bad), "--out", str(out))
    assert code == 2
    assert out.read_text() == "earlier run"


def test_a_missing_file_exits_2(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "process", "--bundle", str(tmp_path / "absent.json"))
    assert code == 2
    assert "absent.json: cannot read" in err


def test_strict_mode_reports_resources_the_r4b_model_rejects(tmp_path: Path, capsys) -> None:
    bundle = json.loads((FIXTURES / "medicare-cms-example-3.json").read_text())
    (therex,) = [e for e in bundle["entry"] if e["resource"].get("id") == "ex3-therex"]
    therex["resource"]["performedPeriod"]["start"] = "2026-11-02 09:00"  # not FHIR
    source = tmp_path / "lax.json"
    source.write_text(json.dumps(bundle))
    report = tmp_path / "report.json"
    assert (
        run(capsys, "process", "--bundle", str(source), "--report", str(report), "--strict")[0] == 0
    )
    problems = json.loads(report.read_text())["encounters"][0]["problems"]
    invalid = [p for p in problems if p["code"] == "resource-invalid"]
    assert invalid
    assert invalid[0]["resource"] == "Procedure/ex3-therex"
    assert "performedPeriod.start" in invalid[0]["message"]


def test_sample_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = sample(tmp_path, "a.json", "--visits", "25", "--seed", "9").read_bytes()
    second = sample(tmp_path, "b.json", "--visits", "25", "--seed", "9").read_bytes()
    other = sample(tmp_path, "c.json", "--visits", "25", "--seed", "10").read_bytes()
    assert first == second
    assert first != other


def test_sample_bundle_is_a_valid_r4_transaction(tmp_path: Path) -> None:
    from fhir.resources.R4B.bundle import Bundle

    data = json.loads(sample(tmp_path, "s.json", "--visits", "6").read_text())
    Bundle.model_validate(data)
    assert all(e["request"]["method"] == "PUT" for e in data["entry"])
    kinds = Counter(e["resource"]["resourceType"] for e in data["entry"])
    assert kinds["Encounter"] == 6
    assert {
        "Patient",
        "Coverage",
        "Procedure",
        "Observation",
        "Condition",
        "Goal",
        "PractitionerRole",
    } <= set(kinds)


def test_sample_mixes_codings_disciplines_payers_and_problems(tmp_path: Path) -> None:
    path = sample(tmp_path, "s.ndjson", "--visits", "200", "--seed", "2", "--problem-rate", "0.3")
    resources = [json.loads(line) for line in path.read_text().splitlines()]
    systems = Counter(
        c["system"]
        for r in resources
        if r["resourceType"] == "Procedure"
        for c in r["code"]["coding"]
    )
    assert {
        "http://www.ama-assn.org/go/cpt",
        "http://snomed.info/sct",
        "https://ehr.example.org/fhir/CodeSystem/therapy-charge-codes",
    } <= set(systems)
    encounters = [r for r in resources if r["resourceType"] == "Encounter"]
    disciplines = Counter(e["serviceType"]["coding"][0]["code"] for e in encounters)
    assert set(disciplines) == {"PT", "OT", "SLP"}
    tagged = sum(1 for e in encounters if e.get("meta"))
    assert 40 <= tagged <= 80  # about 30 % of 200


def test_sample_refuses_a_bad_rate(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["sample", "--out", str(tmp_path / "x.json"), "--problem-rate", "2"])
    assert stop.value.code == 2
    assert "between 0 and 1" in capsys.readouterr().err
