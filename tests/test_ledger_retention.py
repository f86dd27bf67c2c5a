"""The run ledger stays bounded: preview calls leave no row by default, old rows are deleted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from plugin.store.clock import now
from tests.helpers.hooks import call, hook_body


def _rows(app: Any) -> int:
    return len(app.extensions["theracharge"].store.runs(limit=10_000))


def test_preview_calls_leave_no_ledger_row_by_default(make_app, sign) -> None:
    app = make_app()  # write mode preview: cards only
    for _ in range(20):
        assert call(app, hook_body(), sign()).status_code == 200
    assert _rows(app) == 0


def test_preview_rows_are_kept_when_asked(make_app, sign) -> None:
    app = make_app(THERACHARGE_LEDGER_KEEP_PREVIEW="true")
    assert call(app, hook_body(), sign()).status_code == 200
    (run,) = app.extensions["theracharge"].store.runs()
    assert run.outcome == "preview"


def _write_old_row(store: Any) -> None:
    """A ledger row of Encounter/old written 31 days ago, straight to the table."""
    row = {"encounter_id": "old", "trigger": "cds-hook", "outcome": "written"}
    row |= {"at": now() - timedelta(days=31), "lines": [], "gaps": [], "written": {}}
    store._write_runs([{**row, "error": None, "report": None}])


def test_rows_older_than_the_retention_are_deleted_as_new_ones_are_written(make_app) -> None:
    app = make_app(THERACHARGE_LEDGER_RETENTION_DAYS="30")
    store = app.extensions["theracharge"].store
    assert store.retention == timedelta(days=30)
    _write_old_row(store)
    store.record_run("new", "cds-hook", "written", [], [], {}, wait=True)
    assert [r.encounter_id for r in store.runs()] == ["new"]


def test_pruning_works_in_chunks_and_keeps_what_is_recent(make_app, monkeypatch) -> None:
    import plugin.store as store_module

    monkeypatch.setattr(store_module, "PRUNE_CHUNK", 3)
    store = make_app().extensions["theracharge"].store
    store.retention = None  # no pruning as they are written: this test prunes by hand
    base = {
        "trigger": "cds-hook",
        "outcome": "written",
        "lines": [],
        "gaps": [],
        "written": {},
        "error": None,
        "report": None,
    }
    store._write_runs(
        [{**base, "encounter_id": f"o{i}", "at": now() - timedelta(days=400)} for i in range(7)]
        + [{**base, "encounter_id": "recent", "at": now() - timedelta(days=1)}]
    )
    assert store.prune_runs(now() - timedelta(days=90)) == 7
    assert [r.encounter_id for r in store.runs()] == ["recent"]


def test_background_work_done_before_the_retention_is_pruned_with_the_ledger(make_app) -> None:
    from sqlalchemy import update

    from plugin.store.models import BackfillDay, Notification

    store = make_app().extensions["theracharge"].store
    for name in ("old-done", "old-failed", "new-done"):
        store.enqueue(name, "1")
    _, days = store.create_backfill(
        "cli:ann", "2026-01-01", None, False, [("d1", None), ("d2", None)]
    )
    long_ago = now() - timedelta(days=400)
    with store.session() as session:
        session.execute(
            update(Notification)
            .where(Notification.encounter_id.in_(["old-done", "old-failed"]))
            .values(status="done", finished_at=long_ago)
        )
        session.execute(
            update(Notification)
            .where(Notification.encounter_id == "old-failed")
            .values(status="failed")
        )
        session.execute(
            update(BackfillDay)
            .where(BackfillDay.id == days[0])
            .values(status="done", finished_at=long_ago)
        )
    store.finish(3)  # done now
    store.prune_runs(now() - timedelta(days=90))
    assert sorted(n.encounter_id for n in store.notifications()) == ["new-done", "old-failed"]
    assert store.backfill_day(days[0]) is None  # done long ago
    assert store.backfill_day(days[1]) is not None  # still pending


def test_the_first_write_after_start_prunes_even_on_a_machine_just_booted(
    make_app, monkeypatch
) -> None:
    """time.monotonic() counts from the boot: a first pruning "600 s after 0.0" would wait
    for the machine's tenth minute of uptime."""
    import plugin.store as store_module

    store = make_app(THERACHARGE_LEDGER_RETENTION_DAYS="30").extensions["theracharge"].store
    monkeypatch.setattr(store_module.time, "monotonic", lambda: 5.0)  # up for five seconds
    store.retention = None  # written without pruning, then the first pruning write
    _write_old_row(store)
    store.retention = timedelta(days=30)
    store.record_run("new", "cds-hook", "written", [], [], {}, wait=True)
    assert [r.encounter_id for r in store.runs()] == ["new"]
