"""The stages every trigger shares: the tables translation reads, a day's decision, how a run
renders, and what is recorded of a visit that could not be processed."""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from fhir_mappings.assemble import TranslateTables
from fhir_mappings.chargeitem import Definitions, RenderContext, policy_uris
from plugin.config.files import Settings
from plugin.errors import TheraChargeError, VisitTooLarge
from plugin.rules.claim_edits import ClaimTables
from plugin.rules.decision import Decision, decide_day
from plugin.rules.visit import Visit

log = logging.getLogger(__name__)


@functools.cache
def agent_name() -> str:
    """The Provenance agent's name with our version, read from the package metadata once (the
    read costs about a millisecond: too much for every hook call)."""
    try:
        return f"TheraCharge {version('theracharge')}"
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "TheraCharge"


def translate_tables(settings: Settings) -> TranslateTables:
    return TranslateTables(
        catalog=settings.catalog,
        code_map=settings.code_map,
        coding_tables=settings.coding_tables,
        payers=settings.payers,
        minutes_extension=settings.minutes_extension,
        findings=settings.findings,
        total_timed_extension=settings.total_timed_extension,
        episode=settings.episode,
        practitioners=settings.practitioners,
    )


def render_context(settings: Settings, entered: datetime, trigger: str = "") -> RenderContext:
    """How this run renders: our URLs, when it decided, who, why (the trigger's kind: the part
    before any `:caller`), and the configuration versions in force."""
    kind = trigger.split(":", 1)[0]
    versions = dict(settings.versions)
    policy = _policy(settings.extension_base, tuple(sorted(versions.items())))
    return RenderContext(
        _definitions(settings.extension_base), entered, agent_name(), kind, versions, policy
    )


@functools.lru_cache(maxsize=8)
def _definitions(base: str) -> Definitions:
    """Our URLs under the configured base, made once per base rather than once per run."""
    return Definitions(base)


@functools.lru_cache(maxsize=64)
def _policy(base: str, versions: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The Provenance.policy URIs of a configuration: the same for every run until an admin
    changes a table (each run quoted every table's name and version again)."""
    return policy_uris(base, dict(versions))


def failure_reason(error: BaseException) -> str:
    """What is recorded of a visit that could not be processed.

    Our own errors say what went wrong in words safe to keep (never a body or a token); any
    other is named by its type only (its text could quote the data), with the traceback in the
    service log.
    """
    if isinstance(error, TheraChargeError):  # the EHR's errors, a visit too large or invalid …
        return str(error)
    log.error("processing a visit failed", exc_info=error)
    return f"internal error ({type(error).__name__}); see the service log"


def refuse_too_large(settings: Settings, visits: tuple[Visit, ...]) -> None:
    """VisitTooLarge (422) for a visit over THERACHARGE_MAX_PROCEDURES: checked as soon as the
    day is assembled, before anything whose cost grows with it (reading the performers'
    other services and the history, the overlap checks)."""
    limit = settings.service.max_procedures
    for visit in visits:
        if len(visit.services) > limit:
            raise VisitTooLarge(visit.encounter, len(visit.services), limit)


def decide(settings: Settings, visits: tuple[Visit, ...]) -> Decision:
    """The decision of one billing day; a visit with more procedures than the limit is refused
    whole."""
    refuse_too_large(settings, visits)
    return decide_day(
        visits,
        settings.catalog,
        settings.unit_parameters,
        settings.findings,
        ClaimTables(settings.ncci, settings.fees, settings.episode, settings.payers),
        settings.vocabulary,
    )
