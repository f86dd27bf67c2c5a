"""Charge outlets: where a billing day's charges go (plugin/outlets/base.py). `fhir` writes
ChargeItems to the EHR (the default); `oracle-health` calls Millennium's ChargeItem operations;
`hl7v2` sends DFT^P03 messages over MLLP."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugin.config.files import Settings
from plugin.gateway.client import FhirClient
from plugin.gateway.mllp import MllpSender
from plugin.outlets.base import Delivery, Outlet, OutletPlan
from plugin.outlets.fhir import FhirOutlet
from plugin.outlets.hl7v2 import Hl7Outlet
from plugin.outlets.oracle import OracleOutlet

if TYPE_CHECKING:  # the store brings prometheus_client, which must not load before `serve`
    # sets PROMETHEUS_MULTIPROC_DIR (plugin/commands/main.py); run_day imports this module
    from plugin.store.outlet import OutletStoreMixin

__all__ = ["Delivery", "Outlet", "OutletPlan", "outlet_for", "sender_for"]


def sender_for(settings: Settings) -> MllpSender | None:
    """The MLLP connection of an `hl7v2` outlet (one per process, kept open); None otherwise."""
    outlet = settings.outlet
    if outlet.kind != "hl7v2" or outlet.hl7_host is None or outlet.hl7_port is None:
        return None
    return MllpSender(
        outlet.hl7_host, outlet.hl7_port, outlet.hl7_ack_timeout, outlet.hl7_connect_timeout
    )


def outlet_for(
    settings: Settings,
    client: FhirClient | None,
    store: OutletStoreMixin | None = None,
    sender: MllpSender | None = None,
) -> Outlet:
    """The site's outlet, with the site settings in force now (the managed table `outlet`)."""
    if settings.outlet.kind == "oracle-health":
        if store is None or client is None:
            raise ValueError("the oracle-health outlet needs the store and the EHR's connection")
        return OracleOutlet(settings.outlet_site.oracle_health, client, store)
    if settings.outlet.kind == "hl7v2":
        if store is None or sender is None:
            raise ValueError("the hl7v2 outlet needs the store and its MLLP connection")
        return Hl7Outlet(settings.outlet_site.hl7v2, store, sender, settings.outlet.hl7_attempts)
    return FhirOutlet(client)
