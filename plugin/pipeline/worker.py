"""The thread each web process runs in the background (docs/deployment.md "Background work").

Without a broker (the embedded default) it is the worker: it claims the oldest due
notification, else the oldest due backfill day (plugin.pipeline.tasks.next_due: an atomic
compare-and-set, so two processes never take the same), processes it and records how it ended;
a process that stops mid-way leaves its claim to expire and be taken again, so nothing received
is lost.

With a broker (THERACHARGE_BROKER_URL) Celery workers do the work, and this thread is the
sweeper: every THERACHARGE_SWEEP_SECONDS it hands to the queue again whatever is recorded and
not done that was not handed over lately — a notification that came while the broker was down,
one the broker lost in a restart, one whose worker was killed, a retry that fell due.

Either way whatever goes wrong with one piece of work stays with it, and the thread itself never
dies of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from plugin.pipeline.runtime import Runtime
from plugin.pipeline.tasks import claim_timeout, next_due, release_dead_claims

log = logging.getLogger(__name__)
SWEPT = ("notification", "backfill-day")
# A step this long is stuck (/readyz 503): longer than any day takes with the EHR's retries and
# the day lock's wait; the claim timeout may be shorter, since a live step renews its claim.
STUCK_SECONDS = 300.0


class NotificationWorker:
    def __init__(
        self,
        runtime: Runtime,
        idle_seconds: float = 0.5,
        send: Callable[[str, int], object] | None = None,
    ) -> None:
        """`send(kind, id)`: hand a row to the task queue (the sweeper); None: do the work here."""
        self.runtime = runtime
        self.idle_seconds = idle_seconds
        self.send = send
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy_since: float | None = None  # monotonic time the current step began

    @property
    def stale_after(self) -> timedelta:
        """A claim older than this is taken again by any worker (its process must have
        stopped); THERACHARGE_NOTIFICATION_CLAIM_SECONDS."""
        return claim_timeout(self.runtime)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            name = "notifications" if self.send is None else "sweeper"
            self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def health(self) -> str | None:
        """None when well (or never started in this process); else what is wrong."""
        if self._thread is None or self._stop.is_set():
            return None
        if not self._thread.is_alive():
            return f"the {self._thread.name} thread has stopped"
        busy = self.busy_since
        stuck = max(STUCK_SECONDS, self.stale_after.total_seconds())
        if busy is not None and time.monotonic() - busy > stuck:
            return f"one notification has been processing for {time.monotonic() - busy:.0f} s"
        return None

    def _loop(self) -> None:
        try:  # work a killed process of this host held: taken again now, not after the timeout
            release_dead_claims(self.runtime)
        except Exception:  # the database away: the claim timeout still frees them
            log.exception("could not release the claims of stopped processes")
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # the database or broker away, say: log, wait, go on; never die
                log.exception("the %s could not claim, sweep or record work", self._name())
                worked = False
            if not worked:
                idle = self.idle_seconds
                if self.send is not None:
                    idle = self.runtime.settings.service.sweep_seconds
                self._stop.wait(idle)

    def _name(self) -> str:
        return "notification worker" if self.send is None else "sweeper"

    def run_once(self) -> bool:
        """One step: process one due notification, or sweep once; False when there was none."""
        self.busy_since = time.monotonic()
        try:
            if self.send is not None:
                self.sweep()
                return False  # one sweep per interval
            return next_due(self.runtime) is not None
        finally:
            self.busy_since = None

    def sweep(self) -> int:
        """Hand to the queue what is due and was not handed over in the last claim timeout."""
        assert self.send is not None
        store = self.runtime.store
        resend = self.stale_after
        sent = 0
        for kind in SWEPT:
            for row_id in store.to_sweep(kind, resend, self.stale_after):
                self.send(kind, row_id)
                sent += 1
        if sent:
            log.info("the sweeper handed %d recorded piece(s) of work to the queue", sent)
        return sent
