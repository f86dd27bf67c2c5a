"""The store on both databases it supports: SQLite (the default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, inspect

from plugin.store import Store, replay


def test_migrations_create_every_table_and_can_run_again(store: Store) -> None:
    store.migrate()
    tables = set(inspect(store.engine).get_table_names())
    assert {"audit_log", "run_ledger", "notifications", "seen_tokens", "alembic_version"} <= tables
    store.ping()


def test_audit_entries_filter_by_actor_and_object(store: Store) -> None:
    store.audit("alice", "card-accepted", "card", "c1", {"note": "ok"})
    store.audit("bob", "card-overridden", "card", "c2")
    assert [e.actor for e in store.audit_entries()] == ["bob", "alice"]
    assert [e.object_id for e in store.audit_entries(actor="alice")] == ["c1"]
    assert store.audit_entries(object_id="c2")[0].action == "card-overridden"


def test_the_run_ledger_keeps_every_decision(store: Store) -> None:
    store.record_run(
        "e1",
        "cds-hook",
        "written",
        [{"code": "97110", "units": 2}],
        ["time-missing"],
        {"created": ["k1"]},
    )
    store.record_run("e2", "api:billing", "failed", [], [], {}, "HTTP 500")
    (e1,) = store.runs("e1")
    assert (e1.trigger, e1.lines, e1.gaps, e1.written) == (
        "cds-hook",
        [{"code": "97110", "units": 2}],
        ["time-missing"],
        {"created": ["k1"]},
    )
    assert store.runs("e2")[0].error == "HTTP 500"


def test_a_notification_version_is_recorded_once_and_claimed_by_one_worker(store: Store) -> None:
    assert store.enqueue("e1", "3")
    assert not store.enqueue("e1", "3")
    assert store.enqueue("e1", "4")
    claims = []
    threads = [threading.Thread(target=lambda: claims.append(store.claim())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [c for c in claims if c is not None]
    assert sorted((c.encounter_id, c.version) for c in taken) == [("e1", "3"), ("e1", "4")]
    for claimed in taken:
        store.finish(claimed.id)
    assert {n.status for n in store.notifications()} == {"done"}


def test_a_claim_left_by_a_stopped_worker_is_taken_again(store: Store) -> None:
    store.enqueue("e9", "1")
    first = store.claim()
    assert first is not None
    assert store.claim() is None  # still held
    again = store.claim(stale_after=timedelta(seconds=-1))  # as if five minutes had passed
    assert again is not None
    assert (again.id, again.attempts) == (first.id, 2)


def test_a_jwt_id_is_accepted_once(store: Store) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    assert store.first_use("https://ehr.example.org", "jti-1", expires)
    assert not store.first_use("https://ehr.example.org", "jti-1", expires)
    assert store.first_use("https://other.example.org", "jti-1", expires)


def test_a_jwt_id_is_refused_by_another_worker_and_no_commit_waits_for_the_disk(
    store: Store,
) -> None:
    """A token accepted by one worker (process) is refused by another on the same database,
    either way round; the cache's writes do not wait for the disk: SQLite's connection runs
    with synchronous=OFF, PostgreSQL's transaction with synchronous_commit off."""
    import subprocess
    import sys

    expires = datetime.now(UTC) + timedelta(minutes=5)
    script = (
        "import sys; from datetime import datetime; from plugin.store import Store; "
        "s = Store(sys.argv[1]); "
        "print(s.first_use('iss', sys.argv[2], datetime.fromisoformat(sys.argv[3])))"
    )

    def other_worker(jti: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, store.url, jti, expires.isoformat()],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    assert store.first_use("iss", "jti-a", expires)
    assert other_worker("jti-a") == "False"
    assert other_worker("jti-b") == "True"
    assert not store.first_use("iss", "jti-b", expires)
    statements: list[str] = []
    if store.engine.dialect.name == "postgresql":
        event.listen(
            store.engine,
            "before_cursor_execute",
            lambda _c, _r, statement, *_: statements.append(statement),
        )
        assert store.first_use("iss", "jti-c", expires)
        assert "SET LOCAL synchronous_commit TO OFF" in statements
    else:
        assert store.first_use("iss", "jti-c", expires)
        connection = store.replay._connection()
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_expired_jwt_ids_are_forgotten_at_most_once_a_minute(store: Store) -> None:
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    assert store.first_use("iss", "old", long_ago)
    store.replay._purged = 0.0  # a minute has passed: the next call purges
    assert store.first_use("iss", "new", datetime.now(UTC) + timedelta(minutes=5))
    assert store.first_use("iss", "old", long_ago + timedelta(minutes=20))  # its row was purged


def test_the_newest_decision_wins_even_when_it_reached_the_table_first(store: Store) -> None:
    batching = Store(store.url)  # another worker, whose writer has not flushed yet
    batching.defer_ledger(interval=60)
    batching.record_run("e1", "cds-hook", "preview", [], [], {})  # decided first …
    store.record_run("e1", "page:billing", "written", [], [], {})  # … this one later
    store.record_run("e2", "cds-hook", "preview", [], [], {})
    batching.close()  # … and the older decision is written last
    assert [(r.encounter_id, r.outcome) for r in store.latest_runs()] == [
        ("e2", "preview"),
        ("e1", "written"),
    ]
    assert [r.outcome for r in store.runs("e1")] == ["written", "preview"]


def _sqlite_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'theracharge.db'}")
    store.migrate()
    return store


def test_a_jwt_id_written_while_another_worker_holds_the_lock_waits_for_it_alone(
    tmp_path: Path,
) -> None:
    """On SQLite, a worker that finds the write lock held tries again every BUSY_PAUSE itself:
    its connection has no busy handler (whose sleeps grow to 100 ms), and it neither fails nor
    gives up while another worker writes; it is accepted once the lock is let go."""
    store = _sqlite_store(tmp_path)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    assert store.first_use("iss", "jti-0", expires)  # the connection is open
    assert store.replay._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 0
    holder = sqlite3.connect(tmp_path / "theracharge.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another worker in the middle of its write
    outcome: list[bool] = []
    waiting = threading.Thread(
        target=lambda: outcome.append(store.first_use("iss", "jti-1", expires))
    )
    waiting.start()
    time.sleep(0.2)
    assert outcome == []  # still waiting for the lock, not failed
    holder.execute("COMMIT")
    waiting.join(timeout=5)
    assert outcome == [True]
    assert not store.first_use("iss", "jti-1", expires)


def test_a_write_lock_held_past_the_limit_is_an_error_not_an_acceptance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _sqlite_store(tmp_path)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    assert store.first_use("iss", "jti-0", expires)
    monkeypatch.setattr(replay, "BUSY_SECONDS", 0.05)
    holder = sqlite3.connect(tmp_path / "theracharge.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store.first_use("iss", "jti-1", expires)
    holder.execute("ROLLBACK")
    assert store.first_use("iss", "jti-1", expires)  # nothing of the failed call was kept
