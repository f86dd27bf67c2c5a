"""Background work past one machine: the rows a worker claims, the sweeper, the billing day's
lock, the shared EHR token, and the same tasks executed by Celery over a real Redis.

The store tests run on SQLite and PostgreSQL (the `store` fixture); the Celery tests start
Debian's redis-server on loopback and a Celery worker in this process (threads), so the work
functions can be replaced by ones that record what they were given.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import responses
from celery.contrib.testing.worker import start_worker
from sqlalchemy import update

from plugin.config.files import load_settings
from plugin.gateway.auth import SmartBackendAuth
from plugin.gateway.client import EhrSession
from plugin.gateway.errors import FatalFhirError, TemporaryFhirError
from plugin.pipeline import celery_app, tasks
from plugin.pipeline.runtime import Runtime
from plugin.pipeline.worker import NotificationWorker
from plugin.store import Store
from plugin.store.clock import now
from plugin.store.locks import DayLocks
from plugin.store.models import Notification
from tests.redis_server import RedisServer, running_redis

STALE = timedelta(seconds=60)


# --- claiming, sweeping, dead letters (SQLite and PostgreSQL) ------------------------------------


def test_a_named_row_is_claimed_once_and_says_why_not_otherwise(store: Store) -> None:
    nid = store.enqueue("enc-1", "1")
    assert nid is not None
    first = store.claim_row("notification", nid, STALE, "host:1")
    assert first.claimed is not None
    assert first.claimed.attempts == 1
    second = store.claim_row("notification", nid, STALE, "host:2")
    assert second.claimed is None
    assert second.status == "busy"
    assert 55 < second.wait <= 60  # until host:1's claim expires
    # a claim older than the timeout belongs to a worker that died: taken again
    assert store.claim_row("notification", nid, timedelta(0), "host:2").claimed is not None
    (row,) = store.notifications()
    assert (row.claimed_by, row.attempts) == ("host:2", 2)
    store.finish(nid)
    assert store.claim_row("notification", nid, STALE, "host:3").status == "done"
    assert store.claim_row("notification", 999, STALE, "host:3").status == "missing"


def test_a_retry_is_not_taken_before_it_is_due(store: Store) -> None:
    nid = store.enqueue("enc-1", "1")
    assert nid is not None
    assert store.claim_row("notification", nid, STALE, "w").claimed is not None
    store.finish(nid, "the EHR answered 503", retry_at=now() + timedelta(seconds=30))
    answer = store.claim_row("notification", nid, STALE, "w")
    assert answer.status == "not-due"
    assert 25 < answer.wait <= 30


def test_the_sweeper_takes_what_the_queue_never_got_or_lost_once(store: Store) -> None:
    sent = store.enqueue("enc-sent", "1")
    lost = store.enqueue("enc-lost", "1")
    assert sent is not None
    assert lost is not None
    store.mark_enqueued("notification", [sent, lost])
    never = store.enqueue("enc-never", "1")  # the broker was down when it came
    done = store.enqueue("enc-done", "1")
    assert done is not None
    store.finish(done)
    assert store.to_sweep("notification", STALE, STALE) == [never]
    assert store.to_sweep("notification", STALE, STALE) == []  # marked: not sent twice
    with store.session() as session:  # handed over long ago, and still not done: lost
        session.execute(
            update(Notification)
            .where(Notification.id == lost)
            .values(enqueued_at=now() - timedelta(hours=1))
        )
    assert store.to_sweep("notification", STALE, STALE) == [lost]


def test_a_backfill_reports_its_days_by_outcome_and_its_dead_letters(store: Store) -> None:
    backfill_id, days = store.create_backfill(
        "cli:ann",
        "2026-11-02",
        None,
        False,
        [("e1", "Patient/1|2026-11-02"), ("e2", None), ("e3", None)],
    )
    assert len(days) == 3
    assert store.backfill_pending(backfill_id) == days
    store.finish_row("backfill-day", days[0], outcome="written", lines=3, held=1)
    store.finish_row("backfill-day", days[1], outcome="unchanged", lines=2, held=0)
    store.finish_row("backfill-day", days[2], "GET /Encounter/e3 → HTTP 403")
    progress = store.backfill_progress(backfill_id)
    assert {
        k: progress[k]
        for k in ("days", "finished", "written", "unchanged", "held", "failed", "lines")
    } == {
        "days": 3,
        "finished": 3,
        "written": 1,
        "unchanged": 1,
        "held": 1,
        "failed": 1,
        "lines": 5,
    }
    assert progress["failures"] == [{"encounter": "e3", "reason": "GET /Encounter/e3 → HTTP 403"}]
    (letter,) = store.dead_letters()
    assert (letter.kind, letter.key, letter.reason) == (
        "backfill-day",
        "Encounter/e3",
        "GET /Encounter/e3 → HTTP 403",
    )
    assert store.dead_letter_counts() == {"notification": 0, "backfill-day": 1}
    _row, queued = store.retry_row("backfill-day", days[2], "ann")
    assert queued
    assert store.backfill_pending(backfill_id) == [days[2]]
    assert store.work_counts()[("backfill-day", "done")] == 2


# --- one writer per billing day ------------------------------------------------------------------


def _overlap(locks: DayLocks, first: str, second: str) -> bool:
    """Whether two threads held the locks of `first` and `second` at the same time."""
    inside = threading.Event()
    release = threading.Event()
    overlapped = []

    def one() -> None:
        with locks.hold(first):
            inside.set()
            release.wait(5)

    def two() -> None:
        inside.wait(5)
        with locks.hold(second):
            overlapped.append(not release.is_set())

    threads = [threading.Thread(target=one), threading.Thread(target=two)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    release.set()
    for thread in threads:
        thread.join(10)
    return overlapped == [True]


def test_one_writer_per_billing_day_across_connections(store: Store) -> None:
    # PostgreSQL: an advisory lock each connection (and so each instance) waits for; SQLite:
    # one process's lock. Either way the same day waits, another day does not.
    day, other = "Patient/1|2026-11-02", "Patient/2|2026-11-02"
    assert not _overlap(store.day_locks, day, day)
    assert _overlap(store.day_locks, day, other)


def test_the_day_lock_is_shared_by_two_engines_on_postgresql(postgres_url: str) -> None:
    one, two = Store(postgres_url), Store(postgres_url)  # as two instances would
    held = threading.Event()
    release = threading.Event()
    waited: list[float] = []

    def first() -> None:
        with one.day_locks.hold("Patient/9|2026-11-02"):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    threading.Timer(0.4, release.set).start()
    with two.day_locks.hold("Patient/9|2026-11-02"):
        waited.append(time.monotonic() - started)
    thread.join(5)
    assert waited[0] >= 0.35


def _hold_in_a_process(url: str, key: str, held: Any, seconds: float) -> None:
    with Store(url).day_locks.hold(key):
        held.set()
        time.sleep(seconds)


def test_the_day_lock_is_shared_by_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    """`serve`, `process` and `backfill` on one machine: a file lock next to the database."""
    url = f"sqlite:///{tmp_path / 'tc.db'}"
    fork = multiprocessing.get_context("fork")
    held = fork.Event()
    other = fork.Process(target=_hold_in_a_process, args=(url, "Patient/9|2026-11-02", held, 0.5))
    other.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        with Store(url).day_locks.hold("Patient/8|2026-11-02"):
            assert time.monotonic() - started < 0.3  # another day does not wait
        with Store(url).day_locks.hold("Patient/9|2026-11-02"):
            assert time.monotonic() - started >= 0.35  # the same day waits for the process
    finally:
        other.join(10)
    assert (tmp_path / "tc.db.locks").is_dir()


# --- the EHR's token, one for every instance -----------------------------------------------------


@responses.activate
def test_instances_on_one_database_share_the_ehr_token(store: Store, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "key.pem"
    key.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    base = "https://ehr.example.org/fhir"
    responses.get(
        f"{base}/.well-known/smart-configuration", json={"token_endpoint": f"{base}/token"}
    )
    responses.post(f"{base}/token", json={"access_token": "tok-1", "expires_in": 300})

    def instance() -> SmartBackendAuth:
        return SmartBackendAuth(
            base, "theracharge", key, "k1", "system/*.read", EhrSession(), (5, 5), shared=store
        )

    first, second = instance(), instance()
    assert first.headers() == second.headers() == {"Authorization": "Bearer tok-1"}
    assert len([c for c in responses.calls if c.request.url.endswith("/token")]) == 1
    # refused by the EHR: forgotten for everyone, and the next one fetched once
    responses.post(f"{base}/token", json={"access_token": "tok-2", "expires_in": 300})
    first.invalidate()
    assert second.invalidate()
    assert second.headers() == {"Authorization": "Bearer tok-2"}
    assert first.headers() == {"Authorization": "Bearer tok-2"}
    assert len([c for c in responses.calls if c.request.url.endswith("/token")]) == 2


# --- the same tasks on Celery, over a real Redis -------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def queue(redis_server: RedisServer, tmp_path: Path, monkeypatch: Any) -> Iterator[SimpleNamespace]:
    """A runtime on SQLite with a broker, a Celery worker in this process, and work that
    records what it was given (or fails as `fails` says)."""
    settings = load_settings(
        {
            "THERACHARGE_INSTANCE_DIR": str(tmp_path / "instance"),
            "THERACHARGE_BROKER_URL": redis_server.url,
            "THERACHARGE_NOTIFICATION_CLAIM_SECONDS": "3",
        }
    )
    store = Store(settings.service.database_url)
    store.migrate()
    runtime = Runtime(settings, store, base_settings=settings)
    celery_app.use_runtime(runtime)
    done: list[str] = []
    fails: dict[str, list[Exception]] = {}

    def work(_runtime: Any, claimed: Any) -> None:
        errors = fails.get(claimed.encounter_id)
        if errors:
            raise errors.pop(0)
        done.append(claimed.encounter_id)

    monkeypatch.setattr(tasks, "_notification", work)
    monkeypatch.setattr(tasks, "FIRST_RETRY", timedelta(seconds=0.3))
    send = celery_app.Sender(settings, store)
    app = celery_app.configure(settings)
    app.control.purge()
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=5
    ):
        yield SimpleNamespace(
            store=store, send=send, done=done, fails=fails, runtime=runtime, redis=redis_server
        )
    celery_app.use_runtime(None)


def _until(condition: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def test_a_notification_goes_through_the_queue_once_even_sent_twice(queue: Any) -> None:
    nid = queue.store.enqueue("enc-1", "1")
    assert queue.send("notification", nid)
    assert queue.send("notification", nid)
    _until(lambda: [n.status for n in queue.store.notifications()] == ["done"])
    time.sleep(0.5)  # the second message had its chance
    assert queue.done == ["enc-1"]


def test_a_failed_task_is_retried_by_celery_with_its_wait(queue: Any) -> None:
    queue.fails["enc-2"] = [TemporaryFhirError("the EHR answered 503")]
    nid = queue.store.enqueue("enc-2", "1")
    queue.send("notification", nid)
    _until(lambda: queue.done == ["enc-2"])
    (row,) = queue.store.notifications()
    assert (row.status, row.attempts) == ("done", 2)


def test_what_retrying_cannot_mend_is_a_dead_letter_at_once(queue: Any) -> None:
    queue.fails["enc-3"] = [FatalFhirError("GET /Encounter/enc-3 → HTTP 403", 403)]
    nid = queue.store.enqueue("enc-3", "1")
    queue.send("notification", nid)
    _until(lambda: queue.store.dead_letter_counts()["notification"] == 1)
    (letter,) = queue.store.dead_letters()
    assert (letter.key, letter.attempts) == ("Encounter/enc-3", 1)
    assert queue.done == []


def test_a_task_finding_the_day_taken_waits_for_the_claim_then_takes_over(queue: Any) -> None:
    nid = queue.store.enqueue("enc-4", "1")
    # a worker claimed it and was killed: its claim expires after the claim timeout (3 s)
    assert queue.store.claim_row("notification", nid, STALE, "killed:1").claimed is not None
    queue.send("notification", nid)
    time.sleep(1.0)
    assert queue.done == []  # not while the claim stands
    _until(lambda: queue.done == ["enc-4"], seconds=15)
    (row,) = queue.store.notifications()
    assert (row.attempts, row.status) == (2, "done")
    assert row.claimed_by != "killed:1"


def test_a_broker_that_lost_its_queue_loses_nothing(queue: Any) -> None:
    queue.redis.stop()  # down: the notification is recorded, not handed over
    nid = queue.store.enqueue("enc-5", "1")
    assert queue.send("notification", nid) is False
    queue.redis.start()  # back, empty
    sweeper = NotificationWorker(queue.runtime, send=queue.send)
    _until(lambda: sweeper.sweep() == 1 or queue.done, seconds=20)
    _until(lambda: queue.done == ["enc-5"], seconds=30)
    assert sweeper.sweep() == 0  # done: nothing more to hand over


def test_a_page_rerun_runs_on_a_worker_and_the_page_waits_for_it(
    redis_server: RedisServer, make_app: Any, monkeypatch: Any
) -> None:
    app = make_app(
        THERACHARGE_BROKER_URL=redis_server.url,
        THERACHARGE_FHIR_BASE_URL="https://ehr.example.org/fhir",
        THERACHARGE_API_TOKENS="x=sha256:" + "0" * 64,
    )
    state = app.extensions["theracharge"]
    seen: list[tuple[str, str | None, str]] = []

    def decide(runtime: Any, claimed: Any) -> None:  # what a worker's run of the day records
        day = runtime.store.backfill_day(claimed.id)
        actor = runtime.store.backfill(day.backfill_id).actor
        seen.append((claimed.encounter_id, claimed.day, actor))
        runtime.store.finish_row("backfill-day", claimed.id, outcome="written", lines=2, held=0)

    monkeypatch.setattr(tasks, "_backfill_day", decide)
    celery_app.use_runtime(state)
    worker_app = celery_app.configure(state.settings)
    try:
        with start_worker(worker_app, pool="threads", concurrency=1, perform_ping_check=False):
            client = app.test_client()
            with client.session_transaction() as session:
                session.update(who="bea", role="billing", csrf="t")
            answer = client.post("/decisions/e5/rerun", data={"csrf": "t"})
            assert answer.status_code == 302
            page = client.get("/worklist").get_data(as_text=True)  # the flash shows here
    finally:
        celery_app.use_runtime(None)
    assert seen == [("e5", None, "page:bea")]
    assert "Re-run done: written." in page
