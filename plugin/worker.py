"""Processes recorded notifications in the background, one at a time per process.

Every notification was written to the database before it was acknowledged; a worker claims one
(an atomic compare-and-set, so two workers never take the same), processes its encounter and
marks it done. A process that stops mid-way leaves its claim to expire and be taken again, so
nothing received is lost; the same Encounter version is recorded, and so processed, once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from plugin.gateway.errors import FatalFhirError, FhirError
from plugin.gateway.gather import Gatherer
from plugin.service import process_encounter
from plugin.settings import Settings
from plugin.store import Store

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


class NotificationWorker:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        gatherer: Callable[[], Gatherer | None],
        on_done: Callable[..., None] | None = None,
        idle_seconds: float = 0.5,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.gatherer = gatherer
        self.on_done = on_done
        self.idle_seconds = idle_seconds
        self.refresh = refresh  # picks up mapping/payer changes saved by another process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="notifications", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.run_once():
                self._stop.wait(self.idle_seconds)

    def run_once(self) -> bool:
        """Process one pending notification; False when there was none."""
        claimed = self.store.claim()
        if claimed is None:
            return False
        if self.refresh is not None:
            self.refresh()
        gatherer = self.gatherer()
        if gatherer is None:
            self.store.finish(claimed.id, "no EHR configured (THERACHARGE_FHIR_BASE_URL)")
            return True
        try:
            run = process_encounter(
                self.settings, gatherer, claimed.encounter_id, datetime.now().astimezone()
            )
        except FatalFhirError as exc:
            self.store.finish(claimed.id, str(exc))
            log.warning("notification for Encounter/%s failed: %s", claimed.encounter_id, exc)
            return True
        except FhirError as exc:  # temporary: try again later, a bounded number of times
            retry = claimed.attempts < MAX_ATTEMPTS
            self.store.finish(claimed.id, str(exc), retry=retry)
            return True
        self.store.finish(claimed.id)
        if self.on_done:
            self.on_done(claimed.encounter_id, run)
        return True
