"""What every request may use, typed: the app's state (plugin.web.app builds it once and keeps
it in `app.extensions["theracharge"]`); `app_state()` is the one way a view reaches it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app

from plugin.pipeline.runtime import Runtime
from plugin.pipeline.worker import NotificationWorker
from plugin.web.cds_auth import ClientVerifier

KEY = "theracharge"


@dataclass
class AppState(Runtime):
    """What every request may use: the runtime (settings, store, EHR, ledger), the CDS
    verifier, the background thread and, with a broker, the way work is handed to it."""

    cds_verifier: ClientVerifier | None = None
    worker: NotificationWorker | None = None
    send: Callable[[str, int], bool] | None = None  # with THERACHARGE_BROKER_URL

    def queue(self, kind: str, row_id: int) -> None:
        """Recorded work handed to the task queue now (with a broker; without one the
        in-process worker finds it in the table)."""
        if self.send is not None:
            self.send(kind, row_id)

    def retry(self, kind: str, row_id: int, actor: str) -> tuple[Any, bool]:
        """Set-aside work back in the queue, audited (Store.retry_row): (the row, None if there
        is none; whether it was set aside)."""
        row, queued = self.store.retry_row(kind, row_id, actor)
        if queued:
            self.queue(kind, row_id)
        return row, queued


def app_state() -> AppState:
    """The state of the app serving this request."""
    state: AppState = current_app.extensions[KEY]
    return state
