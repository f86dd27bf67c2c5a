"""Processes recorded notifications in the background, one at a time per process.

Every notification was written to the database before it was acknowledged; a worker claims one
(an atomic compare-and-set, so two workers never take the same), processes its encounter and
marks it done. A process that stops mid-way leaves its claim to expire and be taken again, so
nothing received is lost; the same Encounter version is recorded, and so processed, once.

Whatever goes wrong with one notification stays with it: the error is recorded, the notification
is tried again later with a growing wait, and after MAX_ATTEMPTS (or at once, when trying again
cannot help) it is set aside for an admin (status `failed`: the admin API, the worklist and the
metrics show it). The other notifications keep flowing; the thread itself never dies of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from prometheus_client import Counter

from plugin.config.files import Settings
from plugin.errors import Invalid
from plugin.gateway.errors import FatalFhirError
from plugin.gateway.gather import Gatherer
from plugin.pipeline.billing_day import DaySource, WriteMode, run_day
from plugin.pipeline.stages import failure_reason
from plugin.store import Claimed, Store
from plugin.store.clock import now

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
FIRST_RETRY = timedelta(seconds=30)  # then 1, 2, 4 minutes: about 7.5 minutes in all
# Errors that trying again cannot mend: the EHR refused the request or the encounter is gone
# (gather.NotFound is a FatalFhirError), the visit is over the size limit, or one of its
# resources is not valid FHIR.
# The EHR refused the request, the encounter is gone, the visit is over the limit or not valid
# FHIR: trying again cannot help.
NOT_RETRYABLE = (FatalFhirError, Invalid)
NOTIFICATIONS = Counter(
    "theracharge_notifications_total",
    "Notifications processed: done, retry (failed, will be tried again), set-aside",
    ["result"],
)


def retry_wait(attempts: int) -> timedelta:
    """How long a notification that failed `attempts` times waits before the next try."""
    return FIRST_RETRY * (1 << max(0, attempts - 1))


class NotificationWorker:
    def __init__(
        self,
        settings: Callable[[], Settings],
        store: Store,
        gatherer: Callable[[], Gatherer | None],
        on_done: Callable[..., None] | None = None,
        idle_seconds: float = 0.5,
    ) -> None:
        # The effective settings now (the app's, with mapping and payer changes another process
        # saved): read before each notification, so the worker decides as the hook does.
        self.settings = settings
        self.store = store
        self.gatherer = gatherer
        self.on_done = on_done
        self.idle_seconds = idle_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy_since: float | None = None  # monotonic time the current notification began

    @property
    def stale_after(self) -> timedelta:
        """A claim older than this is taken again by any worker (its process must have
        stopped); THERACHARGE_NOTIFICATION_CLAIM_SECONDS."""
        return timedelta(seconds=self.settings().service.notification_claim_seconds)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="notifications", daemon=True)
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
            return "the notification worker thread has stopped"
        busy = self.busy_since
        if busy is not None and time.monotonic() - busy > self.stale_after.total_seconds():
            return f"one notification has been processing for {time.monotonic() - busy:.0f} s"
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # the database away, say: log, wait, go on; never die of it
                log.exception("the notification worker could not claim or record a notification")
                worked = False
            if not worked:
                self._stop.wait(self.idle_seconds)

    def run_once(self) -> bool:
        """Process one due notification; False when there was none."""
        claimed = self.store.claim(self.stale_after)
        if claimed is None:
            return False
        self.busy_since = time.monotonic()
        try:
            self._process(claimed)
        finally:
            self.busy_since = None
        return True

    def _process(self, claimed: Claimed) -> None:
        try:
            settings = self.settings()
            gatherer = self.gatherer()
            if gatherer is None:
                self._set_aside(claimed, "no EHR configured (THERACHARGE_FHIR_BASE_URL)")
                return
            run = run_day(
                settings,
                claimed.encounter_id,
                DaySource.named(gatherer, claimed.day),
                WriteMode.WRITE,
                datetime.now().astimezone(),
                "notification",
            )
        except NOT_RETRYABLE as exc:
            self._set_aside(claimed, failure_reason(exc))
            return
        except Exception as exc:  # noqa: BLE001 -- contained: recorded, retried, set aside
            self._failed(claimed, failure_reason(exc))
            return
        self.store.finish(claimed.id)
        NOTIFICATIONS.labels("done").inc()
        if self.on_done:
            self.on_done(claimed.encounter_id, run)

    def _failed(self, claimed: Claimed, reason: str) -> None:
        if claimed.attempts >= MAX_ATTEMPTS:
            self._set_aside(claimed, f"{reason} (after {claimed.attempts} attempts)")
            return
        wait = retry_wait(claimed.attempts)
        log.warning(
            "notification for Encounter/%s failed (attempt %d of %d), again in %.0f s: %s",
            claimed.encounter_id,
            claimed.attempts,
            MAX_ATTEMPTS,
            wait.total_seconds(),
            reason,
        )
        self.store.finish(claimed.id, reason, retry_at=now() + wait)
        NOTIFICATIONS.labels("retry").inc()

    def _set_aside(self, claimed: Claimed, reason: str) -> None:
        log.warning("notification for Encounter/%s set aside: %s", claimed.encounter_id, reason)
        self.store.finish(claimed.id, reason)
        NOTIFICATIONS.labels("set-aside").inc()
