"""One visit that cannot be processed stays with that visit: recorded, retried, set aside, seen.

The notification worker, `process --since`, `process --bundle` and the charges API each keep
going past it; readiness says when the worker itself is dead or stuck.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

from plugin.commands import main as cli
from plugin.commands import process_ehr
from plugin.config.tokens import token_hash
from plugin.gateway.errors import FatalFhirError
from plugin.pipeline import service, tasks
from plugin.pipeline.runtime import Runtime
from plugin.pipeline.tasks import MAX_ATTEMPTS, retry_wait
from plugin.pipeline.worker import NotificationWorker
from plugin.store import Store
from plugin.store.clock import now
from plugin.store.models import Notification
from tests import builders

ADMIN = {"Authorization": "Bearer admin-token"}
TOKENS = f"ann:admin=sha256:{token_hash('admin-token')}"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'tc.db'}")
    store.migrate()
    return store


def _worker(settings: Any, store: Store, monkeypatch: Any, fails: dict[str, Exception]) -> Any:
    """A worker whose processing fails with `fails[encounter]`, else succeeds."""
    done: list[str] = []

    def process(_runtime: Any, job: Any) -> Any:
        if job.encounter_id in fails:
            raise fails[job.encounter_id]
        done.append(job.encounter_id)
        return SimpleNamespace(written=True)

    monkeypatch.setattr(tasks, "execute", process)
    runtime = Runtime(settings, store)
    return NotificationWorker(runtime, idle_seconds=0.01), done


def test_an_unexpected_error_is_recorded_and_retried_later_while_the_rest_flow(
    settings, store, monkeypatch
) -> None:
    store.enqueue("bad", "1")
    store.enqueue("good", "1")
    w, done = _worker(settings, store, monkeypatch, {"bad": KeyError("the data said so")})
    assert w.run_once()
    assert w.run_once()
    assert not w.run_once()  # the bad one is not due yet
    assert done == ["good"]
    rows = {n.encounter_id: n for n in store.notifications()}
    assert rows["good"].status == "done"
    bad = rows["bad"]
    assert (bad.status, bad.attempts) == ("pending", 1)
    assert bad.last_error == "internal error (KeyError); see the service log"
    assert "the data said so" not in bad.last_error  # an unknown error's text may quote data
    due = bad.next_attempt_at
    waited = (due if due.tzinfo else due.replace(tzinfo=UTC)) - now()
    assert timedelta(seconds=20) < waited <= retry_wait(1)


def test_after_its_attempts_a_failing_notification_is_set_aside(settings, store, monkeypatch):
    store.enqueue("bad", "1")
    w, _ = _worker(settings, store, monkeypatch, {"bad": RuntimeError("boom")})
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with store.session() as session:  # make it due now
            session.execute(update(Notification).values(next_attempt_at=None))
        assert w.run_once()
        (row,) = store.notifications()
        assert row.attempts == attempt
    assert row.status == "failed"
    assert f"after {MAX_ATTEMPTS} attempts" in row.last_error
    assert not w.run_once()


def test_an_error_that_retrying_cannot_mend_is_set_aside_at_once(settings, store, monkeypatch):
    store.enqueue("gone", "1")
    fatal = FatalFhirError("GET /Encounter/gone → HTTP 404", 404)
    w, _ = _worker(settings, store, monkeypatch, {"gone": fatal})
    assert w.run_once()
    (row,) = store.notifications()
    assert (row.status, row.attempts, row.last_error) == ("failed", 1, str(fatal))


def test_the_backoff_doubles() -> None:
    assert [retry_wait(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]


def test_the_worker_thread_survives_a_database_that_fails(settings, store, monkeypatch) -> None:
    calls = []

    def claim(_stale: Any, _by: str, _kind: str = "") -> None:
        calls.append(1)
        raise OSError("database away")

    w, _ = _worker(settings, store, monkeypatch, {})
    monkeypatch.setattr(store, "claim", claim)
    w.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert len(calls) >= 3  # kept trying
        assert w.health() is None  # and alive
    finally:
        w.stop()


def test_readiness_reports_a_dead_or_stuck_worker(make_app, monkeypatch) -> None:
    app = make_app()
    state = app.extensions["theracharge"]
    client = app.test_client()
    assert client.get("/readyz").json["checks"]["notification_worker"] == "ok"
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    state.worker._thread = dead  # started here, and gone
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "stopped" in answer.json["checks"]["notification_worker"]
    alive = threading.Event()
    running = threading.Thread(target=alive.wait)
    running.start()
    try:
        state.worker._thread = running
        state.worker.busy_since = time.monotonic() - 3600
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert "processing for" in answer.json["checks"]["notification_worker"]
    finally:
        alive.set()
        running.join()


def test_admins_see_set_aside_notifications_and_put_one_back(make_app) -> None:
    app = make_app(THERACHARGE_API_TOKENS=TOKENS)
    store = app.extensions["theracharge"].store
    store.enqueue("e7", "2")
    claimed = store.claim()
    store.finish(claimed.id, "internal error (KeyError); see the service log")
    client = app.test_client()
    (listed,) = client.get("/admin/api/v1/notifications", headers=ADMIN).json
    assert listed["encounter"] == "Encounter/e7"
    assert listed["status"] == "failed"
    assert listed["last_error"].startswith("internal error")
    page = client.get("/admin/api/v1/notifications?status=bogus", headers=ADMIN)
    assert page.status_code == 400
    again = client.post(f"/admin/api/v1/notifications/{listed['id']}/retry", headers=ADMIN)
    assert (again.status_code, again.json["status"], again.json["attempts"]) == (200, "pending", 0)
    twice = client.post(f"/admin/api/v1/notifications/{listed['id']}/retry", headers=ADMIN)
    assert twice.status_code == 409
    assert client.post("/admin/api/v1/notifications/999/retry", headers=ADMIN).status_code == 404
    audit = client.get("/admin/api/v1/audit?object_type=notification", headers=ADMIN).json
    assert [(a["actor"], a["action"]) for a in audit] == [("ann", "retry")]


def test_the_worklist_shows_what_was_set_aside(make_app) -> None:
    app = make_app(THERACHARGE_API_TOKENS=TOKENS)
    store = app.extensions["theracharge"].store
    store.enqueue("e8", "1")
    store.finish(store.claim().id, "900 procedures; at most 200 are decided for one visit")
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(who="ann", role="billing")
    page = client.get("/worklist").get_data(as_text=True)
    assert "Visits that could not be processed" in page
    assert "e8" in page
    assert "900 procedures" in page


def _since(
    monkeypatch: pytest.MonkeyPatch, listed: list[dict[str, Any]], before: Callable[[str], None]
) -> None:
    """`process --since` over `listed`, each day's run calling `before` with its encounter."""
    monkeypatch.setattr(process_ehr, "days_between", lambda *_: listed)

    def process(_runtime: Any, job: Any) -> Any:
        before(job.encounter_id)
        visit = SimpleNamespace(findings=(), services=())
        return SimpleNamespace(decision=SimpleNamespace(visits=(visit,), lines=(), findings=()))

    monkeypatch.setattr(service, "execute", process)
    monkeypatch.setenv("THERACHARGE_FHIR_BASE_URL", "https://ehr.example.org/fhir")


def test_process_since_goes_past_a_visit_that_fails_and_exits_1(monkeypatch, capsys) -> None:
    decided = []

    def before(encounter: str) -> None:
        if encounter == "bad":
            raise LookupError("no value in force")
        decided.append(encounter)

    _since(monkeypatch, [{"id": "a"}, {"id": "bad"}, {"id": "c"}], before)
    code = cli.main(["process", "--since", "2026-11-01"])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(decided) == ["a", "c"]  # decided concurrently (THERACHARGE_FHIR_CONCURRENCY)
    assert "Encounter/bad: internal error (LookupError)" in err
    assert "visits: 2 in 2 billing day(s)" in err  # the two that were decided are counted


def _listed(count: int) -> list[dict[str, Any]]:
    """Listed encounters of `count` days, five patients."""
    return [
        {
            "id": f"e{i}",
            "subject": {"reference": f"Patient/p{i % 5}"},
            "period": {"start": f"2026-11-{2 + i // 5:02d}T09:00:00-05:00"},
        }
        for i in range(count)
    ]


def test_process_since_runs_jobs_days_at_a_time_and_reports_each_failure_in_order(
    monkeypatch, capsys
) -> None:
    running: set[str] = set()
    most = 0
    guard = threading.Lock()

    def before(encounter: str) -> None:
        nonlocal most
        with guard:
            running.add(encounter)
            most = max(most, len(running))
        time.sleep(0.02)
        with guard:
            running.discard(encounter)
        if encounter in ("e9", "e3"):
            raise LookupError("no value in force")

    _since(monkeypatch, _listed(12), before)
    code = cli.main(["process", "--since", "2026-11-01", "--jobs", "3"])
    err = capsys.readouterr().err
    assert code == 1
    assert most == 3  # --jobs: the local worker count
    assert "visits: 10 in 10 billing day(s)" in err
    failed = [line.strip() for line in err.splitlines() if line.strip().startswith("failed")]
    assert [line.split(";")[0] for line in failed] == [
        "failed Encounter/e3: internal error (LookupError)",  # in the order listed
        "failed Encounter/e9: internal error (LookupError)",
    ]


def test_a_file_with_a_visit_over_the_procedure_limit_writes_the_others_and_exits_1(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    big = [builders.procedure(f"b{i}", encounter_id="big") for i in range(6)]
    small = builders.complete_record(builders.procedure("s1"))
    other_patient = builders.encounter("big", subject={"reference": "Patient/p2"})
    resources = [*small, other_patient, *big]
    path = tmp_path / "visits.json"
    path.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in resources],
            }
        )
    )
    monkeypatch.setenv("THERACHARGE_MAX_PROCEDURES", "5")
    out, report = tmp_path / "out.json", tmp_path / "report.json"
    code = cli.main(["process", "--bundle", str(path), "--out", str(out), "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 1
    assert "not processed: Encounter/big: 6 procedures; at most 5" in err
    body = json.loads(report.read_text())
    assert [e["encounter"] for e in body["encounters"]] == ["Encounter/e1"]
    assert body["summary"]["failures"] == [
        "Encounter/big: 6 procedures; at most 5 are decided for one visit "
        "(THERACHARGE_MAX_PROCEDURES)"
    ]
    written = json.loads(out.read_text())
    assert all("big" not in json.dumps(e["resource"].get("context", {})) for e in written["entry"])


def test_the_hook_refuses_a_visit_over_the_procedure_limit_with_422(make_app, sign) -> None:
    from tests.helpers.hooks import call, hook_body, prefetch_of

    procedures = [builders.procedure(f"p{i}") for i in range(4)]
    body = hook_body(prefetch_of(builders.complete_record(*procedures)))
    answer = call(make_app(THERACHARGE_MAX_PROCEDURES="3"), body, sign())
    assert answer.status_code == 422
    assert answer.json["message"].startswith("Encounter/e1: 4 procedures; at most 3")


def test_the_database_away_is_a_503_saying_so_not_a_500(make_app, sign, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    from tests.helpers.hooks import call, hook_body

    app = make_app()
    store = app.extensions["theracharge"].store

    def away(*_: Any) -> bool:
        raise OperationalError("INSERT INTO seen_tokens …", {"jti": "x"}, OSError("refused"))

    monkeypatch.setattr(store, "first_use", away)
    app.extensions["theracharge"].cds_verifier.first_use = away
    answer = call(app, hook_body(), sign())
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.json == {
        "error": "unavailable",
        "message": "the database is unavailable; try again",
    }


def test_a_visit_before_the_first_unit_rule_is_held_not_an_error(tmp_path: Path, capsys) -> None:
    """1990: before the unit table's first value (1997-06-02). The file is processed (exit 0)
    and every line of that visit is held with the reason."""
    start = "1990-01-02T09:00:00-05:00"
    record = builders.complete_record(
        builders.procedure("p1", start=start, minutes=30),
        visit=builders.encounter(start="1990-01-02T08:00:00-05:00"),
    )
    path = tmp_path / "old.json"
    entries = [{"resource": r} for r in record]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    report = tmp_path / "report.json"
    assert cli.main(["process", "--bundle", str(path), "--report", str(report)]) == 0
    (encounter,) = json.loads(report.read_text())["encounters"]
    assert {line["status"] for line in encounter["lines"]} == {"planned"}
    assert all("rules-not-in-force" in str(line["holds"]) for line in encounter["lines"])
    problem = next(p for p in encounter["problems"] if p["code"] == "rules-not-in-force")
    assert problem["message"].startswith("No unit rules in force on 1990-01-02")
    assert problem["severity"] == "hold"


def test_the_worklist_shows_a_backfill_day_set_aside_and_puts_it_back(make_app) -> None:
    app = make_app(THERACHARGE_API_TOKENS=TOKENS)
    store = app.extensions["theracharge"].store
    _, (day,) = store.create_backfill("cli:ann", "2026-11-02", None, False, [("e9", None)])
    store.finish_row("backfill-day", day, "GET /Encounter/e9 → HTTP 403")
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(who="bill", role="billing", csrf="t")
    page = client.get("/worklist").get_data(as_text=True)
    assert "Backfill day" in page
    assert "GET /Encounter/e9 → HTTP 403" in page
    answer = client.post(f"/worklist/dead-letters/backfill-day/{day}/retry", data={"csrf": "t"})
    assert answer.status_code == 302
    assert store.backfill_pending(1) == [day]
    audit = store.audit_entries(object_type="backfill-day")
    assert [(a.actor, a.action, a.object_id) for a in audit] == [("bill", "retry", str(day))]
    assert (
        client.post("/worklist/dead-letters/nothing/1/retry", data={"csrf": "t"}).status_code == 404
    )
