"""Where the command line writes: devices and pipes written straight to, links kept, and a
reader that goes away (`| head`) ends the command quietly."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from plugin.commands import main as cli

FIXTURE = Path(__file__).parent / "fixtures" / "visits" / "medicare-cms-example-3.json"
THERACHARGE = str(Path(sys.executable).with_name("theracharge"))


def test_a_fifo_as_report_is_written_to_and_stays_a_fifo(tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code = cli.main(["process", "--bundle", str(FIXTURE), "--report", str(fifo)])
    reader.join(10)
    assert code == 0
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # not replaced by a regular file
    assert got, "nothing was written to the FIFO"
    assert b'"encounters"' in got[0]


def test_a_symlink_keeps_pointing_at_the_file_it_names(tmp_path: Path, capsys) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o644)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert cli.main(["process", "--bundle", str(FIXTURE), "--out", str(link)]) == 0
    assert link.is_symlink()
    assert '"transaction"' in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o644  # its permissions kept


def test_an_output_in_a_missing_folder_exits_2_naming_it(tmp_path: Path, capsys) -> None:
    target = tmp_path / "no-such-folder" / "out.json"
    code = cli.main(["process", "--bundle", str(FIXTURE), "--out", str(target)])
    assert code == 2
    assert "no-such-folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["examples"], ["process", "--bundle", "BIG", "--out", "-"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path, command) -> None:
    """As `| head` does once it has read enough: here the reader is gone before the first
    write, so every write meets a closed pipe."""
    big = tmp_path / "big.json"
    subprocess.run([THERACHARGE, "sample", "--visits", "50", "--out", str(big)], check=True)
    args = [str(big) if part == "BIG" else part for part in command]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [THERACHARGE, *args], stdout=write_end, capture_output=False, stderr=subprocess.PIPE
        )
    finally:
        os.close(write_end)
    err = done.stderr.decode()
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert done.returncode == 141


def test_the_demo_names_addresses_only_while_its_servers_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from plugin.commands.demo import print_report

    urls = {
        "worklist": "http://127.0.0.1:5001/worklist",
        "decision_page": "http://127.0.0.1:5001/decisions/enc-0001",
        "admin_page": "http://127.0.0.1:5001/admin/mappings",
        "service": "http://127.0.0.1:5001",
        "openapi": "http://127.0.0.1:5001/openapi.json",
        "api_docs": "http://127.0.0.1:5001/api-docs",
        "tables_page": "http://127.0.0.1:5001/admin/tables",
        "dashboard": "http://127.0.0.1:5001/dashboard?since=2026-11-02&until=2026-11-02",
        "a_decision": "http://127.0.0.1:5001/api/v1/charges/enc-0001",
        "ehr": "http://127.0.0.1:5002/fhir",
    }
    body = {
        "visits_processed": 2,
        "by_hook": 1,
        "by_notification": 1,
        "days_with_two_visits": 0,
        "charge_items_by_status": {"billable": 2, "planned": 3},
        "lines_by_status": {"billable": 2, "planned": 3},
        "billable_units_by_code": {"97110": 2},
        "units_by_code_and_method": {"97110 (cms)": 2},
        "held_lines_by_reason": [
            {
                "code": "time-missing",
                "title": "Service minutes not documented",
                "count": 3,
                "fix": "Document it.",
            }
        ],
        "lines_with_warnings_by_kind": [],
        "urls": urls,
        "api_token": "demo-token",
    }
    print_report(body, running=True)
    shown = capsys.readouterr().out
    assert "hold worklist: http://127.0.0.1:5001/worklist" in shown
    assert "Service minutes not documented (time-missing): 3 lines. Document it." in shown
    assert "ChargeItems in the EHR: 2 billable, 3 held" in shown  # held, not FHIR's planned
    assert "charge lines (as the dashboard counts them): 2 billable, 3 held" in shown
    assert "dashboard:     http://127.0.0.1:5001/dashboard?since=2026-11-02" in shown
    assert "API docs http://127.0.0.1:5001/api-docs" in shown
    assert "ports are chosen afresh" in shown
    print_report(body, running=False)
    stopped = capsys.readouterr().out
    assert "http://127.0.0.1:5001" not in stopped
    assert "--once" in stopped


def test_a_range_runs_progress_says_count_rate_and_time_left() -> None:
    from plugin.commands.progress import Progress

    now = [100.0]
    progress = Progress(200, clock=lambda: now[0])
    for _ in range(50):
        progress.step()
    now[0] = 110.0  # 50 days in 10 s: 5 a second, 150 left: 30 s
    assert progress.line().endswith("50/200 days, 5.0/s, 0:30 left")
    assert progress.enabled is False  # under pytest stderr is not a terminal: nothing printed
