"""What every piece of work needs, in a web process or a Celery worker alike: the effective
settings (the managed tables as the database holds them now), the store, the EHR connection,
and the one place a decision is written to the run ledger."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from plugin.config.effective import effective_settings
from plugin.config.files import Settings
from plugin.gateway.factory import connect
from plugin.gateway.gather import Gatherer, KnownServers
from plugin.gateway.mllp import MllpSender
from plugin.outlets import Outlet, outlet_for, sender_for
from plugin.pipeline.billing_day import DayRun
from plugin.render.report import day_report, line_therapists, line_times, line_warnings
from plugin.rules.visit import Severity
from plugin.store import Store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    base_settings: Settings | None = None  # from files and environment, before the database
    _local: threading.local = field(default_factory=threading.local)
    # the CapabilityStatements of the EHRs hooks name (fhirServer): read once an hour, not per call
    servers: KnownServers = field(default_factory=KnownServers)
    _sender: MllpSender | None = None  # the hl7v2 outlet's connection, kept open by the process
    _sending: threading.Lock = field(default_factory=threading.Lock)
    _revision: int = -1
    _loading: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def opened(cls, settings: Settings) -> Runtime:
        """A runtime on the configured database, its schema brought up to date (one process of
        every instance at a time): a Celery worker's, or a command's."""
        store = Store(settings.service.database_url)
        with store.exclusive("theracharge-start"):
            store.migrate()
        runtime = cls(settings, store, base_settings=settings)
        runtime.refresh()  # the managed tables as the database holds them
        return runtime

    def refresh(self) -> None:
        """Pick up tables any process changed, before every decision and request: one indexed
        query (Store.config_revision, tens of µs), and the tables read again only when it moved.

        A charge priced or coded with a superseded table is the worst error this product can
        make, so there is no "checked a moment ago" shortcut: a decision that starts after a
        save has committed is made with it (tests/test_config_freshness.py). Threads that find
        the revision moved load it one at a time; each returns only once `settings` holds a
        version at least as new as the revision it saw (the revision is read before the
        tables, so a save landing during the load is picked up by the next call)."""
        if self.base_settings is None:
            return
        revision = self.store.config_revision()
        if revision == self._revision:
            return
        with self._loading:
            if revision <= self._revision:
                return  # another thread loaded this revision (or a newer one) meanwhile
            settings = effective_settings(self.base_settings, self.store)
            self.settings, self._revision = settings, revision

    def current(self) -> Settings:
        """The effective settings now: another process's saved change picked up first."""
        self.refresh()
        return self.settings

    def outlet(self, settings: Settings) -> Outlet | None:
        """Where the day's charges go under `settings` (None: the EHR's ChargeItems, run_day's
        default). An hl7v2 outlet shares the process's one MLLP connection: messages go one
        at a time, as MLLP has them."""
        if settings.outlet.kind == "fhir":
            return None
        if settings.outlet.kind == "oracle-health":  # on the EHR itself, our connection
            gatherer = self.gatherer()
            return outlet_for(settings, gatherer.client if gatherer else None, self.store)
        with self._sending:
            if self._sender is None:
                self._sender = sender_for(settings)
        return outlet_for(settings, None, self.store, self._sender)

    def gatherer(self) -> Gatherer | None:
        """Our EHR (THERACHARGE_FHIR_BASE_URL), built once per thread (a requests session is
        not shared across threads); None if not configured. On a shared database the SMART
        access token is shared by every thread, worker and instance."""
        if self.settings.fhir.base_url is None:
            return None
        gatherer: Gatherer | None = getattr(self._local, "gatherer", None)
        if gatherer is None:
            shared = self.store if self.store.shared else None
            gatherer = self._local.gatherer = Gatherer(connect(self.settings.fhir, shared=shared))
        return gatherer

    def record(
        self,
        encounter_id: str,
        trigger: str,
        run: DayRun,
        outcome: str | None = None,
        *,
        wait: bool = False,
    ) -> None:
        """The run ledger: every decision, what was written, what failed (`wait`: on the table
        before returning, Store.record_run). The one place a ledger row is made."""
        outcome = outcome or run.outcome
        if outcome == "preview" and not self.settings.service.ledger_keep_preview:
            return  # cards only, nothing written: not kept (THERACHARGE_LEDGER_KEEP_PREVIEW)
        decision = run.decision
        visit = decision.visit
        lines = [
            {
                "key": ln.key,
                "code": ln.code,
                "modifiers": list(ln.modifiers),
                "units": ln.units,
                "minutes": ln.minutes,
                "status": ln.status.value,
                "discipline": ln.discipline.value,
                "date": ln.date,
                "holds": sorted({h.code for h in ln.holds}),
                "warnings": line_warnings(ln),
                "payer": visit.payer or "default",
                "provider": ln.provider,
                "therapists": line_therapists(ln),
                "times": line_times(ln),
                "patient": {
                    "reference": visit.patient,
                    "name": visit.patient_name,
                    "mrn": visit.patient_mrn,
                    "birth_date": visit.patient_birth_date,
                },
                "encounter": ln.context,
            }
            for ln in decision.lines
        ]
        gaps = [f.code for f in decision.findings if f.severity is not Severity.INFO]
        written: dict[str, Any] = run.plan.summary() if run.plan is not None else {}
        report = day_report(decision)
        report["configuration"] = run.configuration
        if run.alone:
            report["decided_alone"] = True
        self.store.record_run(
            encounter_id,
            trigger,
            outcome,
            lines,
            gaps,
            written,
            run.error,
            report,
            # a visit decided alone is not its whole day: kept apart from the day's decisions
            day=None if run.alone else decision.day,
            wait=wait,
        )
