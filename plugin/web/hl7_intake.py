"""`serve`'s HL7 v2 event listener (THERACHARGE_HL7_LISTEN): events from the site's interface
engine over MLLP, each recorded as a notification (plugin/pipeline/events.py).

Under gunicorn the listener runs in a process of its own, started by `serve` (a fresh
interpreter: no thread, socket or database connection crosses gunicorn's forks) and stopped
with it; the web workers' notification workers — or the Celery workers, with a broker — run
the recorded days. With `serve --dev` it is a thread of the one process.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from multiprocessing.process import BaseProcess
from typing import Any

from plugin.config.files import Settings, load_settings
from plugin.gateway.mllp import MllpListener
from plugin.pipeline.events import EventIntake
from plugin.pipeline.runtime import Runtime
from plugin.web.observability import configure_logging

log = logging.getLogger(__name__)


def listener_for(runtime: Runtime, send: Any) -> MllpListener | None:
    """The listener THERACHARGE_HL7_LISTEN asks for (None when unset), not started."""
    service = runtime.settings.service
    if service.hl7_listen is None:
        return None
    host, port = service.hl7_listen
    intake = EventIntake(runtime, service.hl7_events, send)
    return MllpListener(host, port, intake, service.hl7_listen_peers)


def listen_forever() -> None:
    """The listener process: its own settings (the environment), database and queue hand-off;
    until SIGTERM."""
    configure_logging()
    settings = load_settings()
    runtime = Runtime.opened(settings)
    send = None
    if settings.service.broker_url:
        from plugin.pipeline.celery_app import Sender

        send = Sender(settings, runtime.store)
    listener = listener_for(runtime, send)
    if listener is None:
        return
    listener.start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    listener.stop()
    runtime.store.close()


def spawn(settings: Settings) -> BaseProcess | None:
    """The listener process for `serve` under gunicorn (None when THERACHARGE_HL7_LISTEN is
    unset)."""
    if settings.service.hl7_listen is None:
        return None
    process = multiprocessing.get_context("spawn").Process(
        target=listen_forever, name="theracharge-hl7-listener", daemon=True
    )
    process.start()
    return process
