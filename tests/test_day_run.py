"""One run of a billing day, whatever starts it (issue 31): every trigger goes through
plugin.pipeline.service.execute, so each holds the day's lock while it writes, leaves its row
in the run ledger and moves the decision metric — the hook, the charges API, a notification,
a backfill, a page's re-run, and `process --encounter/--since`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import responses

from plugin.commands import main as cli
from plugin.config.files import load_settings
from plugin.config.tokens import token_hash
from plugin.pipeline import metrics
from plugin.pipeline.tasks import process_notification
from plugin.store import Store
from plugin.store.locks import DayLocks
from tests.helpers.hooks import call, hook_body, serve_the_day

BASE = "https://ehr.example.org/fhir"
DAY = "Patient/p1|2026-11-02"
TOKENS = f"bill=sha256:{token_hash('billing-token')}"


def lines_counted() -> float:
    """theracharge_charge_lines_total, all statuses."""
    return sum(
        sample.value
        for family in metrics.DECISIONS.collect()
        for sample in family.samples
        if sample.name == "theracharge_charge_lines_total"
    )


@pytest.fixture
def ehr() -> Iterator[dict[str, Any]]:
    """The EHR (responses): the day of Encounter/e1 to read, ChargeItems written; the hook's
    body that prefetches the same day."""
    responses.start()
    try:
        body = hook_body(fhirServer=BASE)
        del body["prefetch"]["chargeItems"]
        serve_the_day(BASE, body["prefetch"])
        responses.get(f"{BASE}/Encounter/e1", json=body["prefetch"]["encounter"])
        responses.post(
            BASE, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []}
        )
        yield body
    finally:
        responses.stop()
        responses.reset()


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The billing days whose lock a run held (every store's DayLocks)."""
    keys: list[str] = []
    original = DayLocks.hold

    @contextmanager
    def hold(self: DayLocks, key: str) -> Iterator[None]:
        with original(self, key):
            keys.append(key)
            yield

    monkeypatch.setattr(DayLocks, "hold", hold)
    return keys


def posts() -> int:
    return sum(1 for c in responses.calls if c.request.method == "POST" and c.request.url == BASE)


def assert_one_run(store: Store, trigger: str, held: list[str], before: float) -> None:
    """The trigger's run: the day's lock held, its transaction sent, its ledger row, counted."""
    store.flush_ledger()
    (run,) = store.runs("e1")
    assert (run.trigger, run.outcome) == (trigger, "written")
    assert run.day == DAY
    assert held == [DAY]  # the lock of the day written, held once
    assert posts() == 1
    assert lines_counted() > before


def _app(make_app: Callable[..., Any], **env: str) -> Any:
    return make_app(
        THERACHARGE_FHIR_BASE_URL=BASE,
        THERACHARGE_WRITE_MODE="direct",
        THERACHARGE_API_TOKENS=TOKENS,
        **env,
    )


def test_the_hook(make_app, sign, ehr, held) -> None:
    app, before = _app(make_app), lines_counted()
    assert call(app, ehr, sign()).status_code == 200
    assert_one_run(app.extensions["theracharge"].store, "cds-hook", held, before)


def test_the_charges_api(make_app, ehr, held) -> None:
    app, before = _app(make_app), lines_counted()
    answer = app.test_client().post(
        "/api/v1/encounters/e1/charges", headers={"Authorization": "Bearer billing-token"}
    )
    assert answer.status_code == 200, answer.json
    assert_one_run(app.extensions["theracharge"].store, "api:bill", held, before)


def test_a_notification(make_app, ehr, held) -> None:
    app = _app(make_app, THERACHARGE_NOTIFICATION_SECRET="s3cret")
    state = app.extensions["theracharge"]
    answer = app.test_client().put(
        "/notifications/fhir/Encounter/e1",
        json=ehr["prefetch"]["encounter"],
        headers={"X-TheraCharge-Secret": "s3cret"},
    )
    assert answer.json == {"queued": True}
    (row,) = state.store.notifications("pending")
    assert row.day == DAY  # named from the payload, without reading the EHR
    before = lines_counted()
    assert process_notification(state, row.id).status == "done"
    assert_one_run(state.store, "notification", held, before)


def test_a_page_rerun(make_app, ehr, held) -> None:
    app = _app(make_app)
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(who="ann", role="billing", csrf="form-token")
    before = lines_counted()
    assert client.post("/decisions/e1/rerun", data={"csrf": "form-token"}).status_code == 302
    assert_one_run(app.extensions["theracharge"].store, "page:ann", held, before)


def _command_store() -> Store:
    """The database a command of the test used (its instance folder's, tests/conftest.py)."""
    return Store(load_settings(os.environ).service.database_url)


def test_process_encounter(monkeypatch, ehr, held, capsys) -> None:
    monkeypatch.setenv("THERACHARGE_FHIR_BASE_URL", BASE)
    before = lines_counted()
    assert cli.main(["process", "--encounter", "e1"]) == 0
    assert '"sent": true' in capsys.readouterr().out
    assert_one_run(_command_store(), "cli", held, before)


def test_process_since(monkeypatch, ehr, held, capsys) -> None:
    monkeypatch.setenv("THERACHARGE_FHIR_BASE_URL", BASE)
    before = lines_counted()
    assert cli.main(["process", "--since", "2026-11-02", "--until", "2026-11-02"]) == 0
    assert "1 billing day(s)" in capsys.readouterr().err
    assert_one_run(_command_store(), "cli", held, before)


def test_a_backfill(monkeypatch, ehr, held, capsys) -> None:
    monkeypatch.setenv("THERACHARGE_FHIR_BASE_URL", BASE)
    before = lines_counted()
    assert cli.main(["backfill", "--since", "2026-11-02", "--until", "2026-11-02"]) == 0
    assert "written 1" in capsys.readouterr().out
    assert_one_run(_command_store(), "backfill", held, before)


def test_a_dry_run_takes_no_lock_and_keeps_no_ledger_row_by_default(
    monkeypatch, ehr, held, capsys
) -> None:
    monkeypatch.setenv("THERACHARGE_FHIR_BASE_URL", BASE)
    before = lines_counted()
    assert cli.main(["process", "--encounter", "e1", "--dry-run"]) == 0
    assert '"would_write"' in capsys.readouterr().out
    assert held == []  # nothing written: no lock
    assert posts() == 0
    assert _command_store().runs("e1") == []  # a preview: THERACHARGE_LEDGER_KEEP_PREVIEW
    assert lines_counted() > before  # decided all the same
