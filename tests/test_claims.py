"""A claim lives as long as its worker: renewed while the work runs (a heartbeat), released at
start when the process that held it is gone (issue 30, item 7)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta

from plugin.pipeline.tasks import holder_alive, worker_name
from plugin.store import Store


def _claimed(store: Store, encounter: str, by: str) -> int:
    row_id = store.enqueue(encounter, "1")
    assert row_id is not None
    taken = store.claim(timedelta(seconds=60), by)
    assert taken is not None
    assert taken.id == row_id
    return row_id


def test_a_renewed_claim_outlives_the_claim_timeout_and_a_dropped_one_does_not(
    store: Store,
) -> None:
    mine = worker_name()
    kept = _claimed(store, "e-kept", mine)
    with store.keep_claim("notification", kept, mine, every=0.2):
        time.sleep(1.6)
        answer = store.claim_row("notification", kept, timedelta(seconds=1), "other:1")
        assert answer.status == "busy"  # renewed: still ours after 1.6 s of a 1 s timeout
    time.sleep(1.3)  # no more beats
    answer = store.claim_row("notification", kept, timedelta(seconds=1), "other:1")
    assert answer.status == "claimed"


def test_a_heartbeat_never_renews_a_claim_another_worker_took(store: Store) -> None:
    row = _claimed(store, "e-taken", "gone:1")
    taken = store.claim_row("notification", row, timedelta(seconds=0), "other:2")
    assert taken.status == "claimed"
    with store.keep_claim("notification", row, "gone:1", every=0.05):
        time.sleep(0.3)
    (found,) = store.notifications("processing")
    assert found.claimed_by == "other:2"


def test_claims_of_this_hosts_stopped_processes_are_released_at_start(store: Store) -> None:
    host = socket.gethostname()
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = f"{host}:{ended.stdout.strip()}@1"  # a process that has exited
    reused = f"{host}:{os.getpid()}@1"  # our number, but another start: a reused pid
    alive = worker_name()
    elsewhere = "another-host:1@1"  # not ours to judge: the claim timeout decides
    for encounter, holder in (("e1", dead), ("e2", reused), ("e3", alive), ("e4", elsewhere)):
        _claimed(store, encounter, holder)
    assert not holder_alive(dead)
    assert not holder_alive(reused)
    assert holder_alive(alive)
    assert store.release_dead_claims(host, holder_alive) == 2
    processing = {n.encounter_id: n.claimed_by for n in store.notifications("processing")}
    assert processing == {"e3": alive, "e4": elsewhere}
    pending = {n.encounter_id for n in store.notifications("pending")}
    assert pending == {"e1", "e2"}
    # taken again at once, not after the claim timeout
    assert store.claim(timedelta(minutes=5), alive) is not None
