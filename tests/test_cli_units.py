"""`theracharge units`: the JSON contract, the text format, and every bad-input error."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from plugin.commands import main as cli


def run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stdin: str,
    *args: str,
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(["units", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cms_example_3_as_documented_in_the_contract(monkeypatch, capsys) -> None:
    request = {
        "method": "cms",
        "services": [{"code": "97110", "minutes": 33}, {"code": "97140", "minutes": 7}],
    }
    code, out, err = run(monkeypatch, capsys, json.dumps(request))
    assert (code, err) == (0, "")
    body = json.loads(out)
    assert body["method"] == "cms"
    assert body["total_timed_minutes"] == 40
    assert body["total_treatment_minutes"] == 40
    assert body["total_timed_units"] == 3
    assert body["lines"] == [
        {"code": "97110", "minutes": 33, "kind": "timed-15", "units": 2, "discipline": "PT"},
        {"code": "97140", "minutes": 7, "kind": "timed-15", "units": 1, "discipline": "PT"},
    ]
    assert body["alternatives"] == []
    assert body["explanation"]
    assert all(set(e) == {"text", "source"} and e["source"] for e in body["explanation"])
    assert any("§20.2 C" in e["source"] for e in body["explanation"])


def test_method_defaults_to_cms_and_reads_from_a_file(monkeypatch, capsys, tmp_path: Path) -> None:
    path = tmp_path / "visit.json"
    path.write_text(
        json.dumps(
            {"services": [{"code": "97110", "minutes": 10}, {"code": "97140", "minutes": 10}]}
        )
    )
    code, out, _ = run(monkeypatch, capsys, "", str(path))
    assert code == 0
    body = json.loads(out)
    assert body["method"] == "cms"
    assert body["total_timed_units"] == 1


def test_ama_method_and_alternatives_in_json(monkeypatch, capsys) -> None:
    request = {
        "method": "ama",
        "services": [{"code": "97110", "minutes": 10}, {"code": "97140", "minutes": 10}],
    }
    _, out, _ = run(monkeypatch, capsys, json.dumps(request))
    assert [ln["units"] for ln in json.loads(out)["lines"]] == [1, 1]
    tie = {"services": [{"code": "97140", "minutes": 7}, {"code": "97110", "minutes": 7}]}
    _, out, _ = run(monkeypatch, capsys, json.dumps(tie))
    assert json.loads(out)["alternatives"] == [
        {"discipline": "PT", "units": {"97140": 0, "97110": 1}}
    ]


def test_text_format_prints_a_readable_table(monkeypatch, capsys) -> None:
    request = {"services": [{"code": "97112", "minutes": 24}, {"code": "97110", "minutes": 23}]}
    code, out, _ = run(monkeypatch, capsys, json.dumps(request), "--format", "text")
    assert code == 0
    assert "Medicare 8-minute rule" in out
    assert "97112  timed-15               24      2" in out
    assert "total timed minutes 47 → 3 timed units" in out


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("not json", "input: not valid JSON"),
        ("[1, 2]", "input: expected a JSON object with a services list"),
        (
            '{"method": "medicaid", "services": []}',
            "method: unknown method 'medicaid' (expected cms or ama)",
        ),
        (
            '{"services": [{"code": "97110", "minutes": 8}, {"code": "97140", "minutes": 8},'
            ' {"code": "97999", "minutes": 8}]}',
            "services[2].code: unknown code 97999",
        ),
        (
            '{"services": [{"code": "97110", "minutes": -3}]}',
            "services[0].minutes: must be a non-negative whole number of minutes, got -3",
        ),
        (
            '{"services": [{"code": "97110", "minutes": 7.5}]}',
            "services[0].minutes: must be a non-negative whole number of minutes, got 7.5",
        ),
        (
            '{"services": [{"code": "97110", "minutes": "12"}]}',
            "services[0].minutes: must be a non-negative whole number of minutes, got '12'",
        ),
        (
            '{"services": [{"code": "97110", "minutes": true}]}',
            "services[0].minutes: must be a non-negative whole number of minutes, got True",
        ),
        (
            '{"services": [{"code": "97161"}, {"code": "97110"}]}',
            "services[1].minutes: required for timed code 97110",
        ),
        (
            '{"services": [{"code": "97161", "discipline": "OT"}]}',
            "services[0].discipline: 97161 is not billed under OT (catalog: PT)",
        ),
        (
            '{"services": [{"code": "97110", "minutes": 8, "discipline": "RT"}]}',
            "services[0].discipline: unknown discipline 'RT' (expected PT or OT or SLP)",
        ),
        ('{"services": [{"code": "97110", "minutse": 8}]}', "services[0].minutse: Unknown field."),
        ('{"method": "cms"}', "services: Missing data for required field."),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_field(
    monkeypatch, capsys, stdin, message
) -> None:
    code, out, err = run(monkeypatch, capsys, stdin)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_a_missing_file_exits_2(monkeypatch, capsys, tmp_path: Path) -> None:
    code, out, err = run(monkeypatch, capsys, "", str(tmp_path / "absent.json"))
    assert (code, out) == (2, "")
    assert "absent.json: cannot read" in err


def test_a_broken_site_config_exits_2_naming_file_and_field(
    monkeypatch, capsys, tmp_path: Path
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "units.yaml").write_text(
        "unit_table: {values: []}\ntie_break: [coin-flip]\n"
    )
    monkeypatch.setenv("THERACHARGE_CONFIG_DIR", str(tmp_path))
    code, out, err = run(monkeypatch, capsys, '{"services": []}')
    assert (code, out) == (2, "")
    assert "units.yaml" in err
    assert "tie_break[0]" in err
    assert "unit_table.values" in err


def test_examples_print_the_worked_examples(capsys) -> None:
    assert cli.main(["examples"]) == 0
    out = capsys.readouterr().out
    assert "CMS Example 1" in out
    assert "97112  timed-15               24      2" in out
    assert "AMA per-code rule" in out
