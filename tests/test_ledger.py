"""The ledger's batch writer: rows leave the request path, none is lost on a graceful stop."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

from plugin.store import Store
from plugin.store.ledger import LedgerWriter


def _rows_elsewhere(store: Store) -> int:
    """How many rows another worker sees: a second store on the same database, with no queue
    of ours to flush."""
    return len(Store(store.url).runs(limit=1000))


def _count(result: str) -> float:
    return REGISTRY.get_sample_value("theracharge_ledger_rows_total", {"result": result}) or 0.0


def _eventually(check: Any, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


@pytest.fixture
def db(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'theracharge.db'}")
    store.migrate()
    store.defer_ledger(interval=0.02)
    return store


def _record(store: Store, encounter: str, outcome: str = "preview") -> None:
    store.record_run(encounter, "cds-hook", outcome, [{"code": "97110"}], [], {})


def test_queued_rows_reach_the_database_without_anyone_reading(db: Store) -> None:
    store = db
    for n in range(25):
        _record(store, f"e{n}")
    assert _eventually(lambda: _rows_elsewhere(store) == 25)
    assert [r.encounter_id for r in store.runs(limit=3)] == ["e24", "e23", "e22"]


def test_a_read_in_the_same_process_sees_what_was_just_recorded(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'theracharge.db'}")
    store.migrate()
    store.defer_ledger(interval=60)  # the thread would not write for a minute
    _record(store, "e1", "written")
    assert [(r.encounter_id, r.outcome) for r in store.runs("e1")] == [("e1", "written")]
    assert [r.encounter_id for r in store.latest_runs()] == ["e1"]


def test_closing_writes_what_is_left(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'theracharge.db'}")
    store.migrate()
    store.defer_ledger(interval=60)
    for n in range(3):
        _record(store, f"e{n}")
    assert _rows_elsewhere(store) == 0
    store.close()
    assert _rows_elsewhere(store) == 3


def test_a_failed_write_keeps_the_rows_in_order_for_the_next_attempt() -> None:
    written: list[list[str]] = []
    failing = threading.Event()
    failing.set()

    def write(rows: list[dict[str, Any]]) -> None:
        if failing.is_set():
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        written.append([r["n"] for r in rows])

    ledger = LedgerWriter(write, interval=0.01)
    ledger.put({"n": "a"})
    ledger.put({"n": "b"})
    failures = REGISTRY.get_sample_value("theracharge_ledger_write_failures_total") or 0.0
    with pytest.raises(OperationalError):
        ledger.flush()
    assert REGISTRY.get_sample_value("theracharge_ledger_write_failures_total") == failures + 1
    ledger.put({"n": "c"})
    assert ledger.pending == 3
    failing.clear()
    assert _eventually(lambda: ledger.pending == 0)
    assert [n for batch in written for n in batch] == ["a", "b", "c"]
    ledger.close()


def test_a_backlog_makes_the_caller_write_it() -> None:
    written: list[int] = []
    ledger = LedgerWriter(lambda rows: written.append(len(rows)), interval=60, max_pending=4)
    for n in range(4):
        ledger.put({"n": n})
    assert written == [4]  # the fourth put wrote the batch itself
    assert ledger.pending == 0
    ledger.close()


def test_an_idle_thread_stops_and_the_next_row_starts_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("plugin.store.ledger.IDLE_SECONDS", 0.05)
    written: list[Any] = []
    ledger = LedgerWriter(written.extend, interval=0.01)
    ledger.put({"n": 1})
    assert _eventually(lambda: written == [{"n": 1}] and ledger._thread is None)
    ledger.put({"n": 2})
    assert _eventually(lambda: written == [{"n": 1}, {"n": 2}])
    ledger.close()


def test_a_row_the_database_refuses_is_dropped_and_the_others_are_written(
    db: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store = db
    before = {k: _count(k) for k in ("written", "refused")}
    _record(store, "e1")
    store.record_run("e2", "cds-hook", "preview", [{"secret": object()}], [], {})  # unserialisable
    _record(store, "e3")
    store.flush_ledger()
    assert sorted(r.encounter_id for r in store.runs()) == ["e1", "e3"]
    assert store._ledger is not None
    assert store._ledger.dropped == 1
    assert _count("written") - before["written"] == 2  # on /metrics
    assert _count("refused") - before["refused"] == 1
    (message,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "Encounter/e2" in message
    assert "secret" not in message  # never the row itself
    assert "INSERT" not in message


def test_closing_while_the_database_is_away_keeps_quiet_about_the_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def down(rows: list[dict[str, Any]]) -> None:
        raise OperationalError("INSERT", {"lines": "the row"}, sqlite3.OperationalError("gone"))

    ledger = LedgerWriter(down, interval=60)
    ledger.put({"n": 1})
    ledger.close()  # logs, does not raise: a stopping worker must still stop
    (message,) = [r.getMessage() for r in caplog.records if "shutdown" in r.getMessage()]
    assert message == "1 ledger row(s) could not be written at shutdown: gone"


def test_a_row_arriving_after_close_is_written_at_once() -> None:
    written: list[Any] = []
    ledger = LedgerWriter(written.extend, interval=60)
    ledger.close()
    ledger.put({"n": 1})
    assert written == [{"n": 1}]


def test_an_unexpected_error_on_one_row_drops_that_row_only() -> None:
    written: list[Any] = []

    def write(rows: list[dict[str, Any]]) -> None:
        if any(r["n"] == "bad" for r in rows):
            raise ValueError("cannot store this")
        written.extend(r["n"] for r in rows)

    ledger = LedgerWriter(write, interval=60)
    for n in ("a", "bad", "c"):
        ledger.put({"n": n, "encounter_id": n})
    ledger.flush()
    assert written == ["a", "c"]
    assert (ledger.dropped, ledger.pending) == (1, 0)
    ledger.close()
