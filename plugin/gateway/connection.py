"""How to reach the EHR's FHIR API: the gateway's own settings type, filled in by
plugin.config.variables from THERACHARGE_FHIR_* and THERACHARGE_SMART_*."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class FhirConnection:
    """How to reach the EHR's FHIR API (THERACHARGE_FHIR_* and THERACHARGE_SMART_*)."""

    base_url: str | None = None
    token: str | None = field(default=None, repr=False)
    smart_client_id: str | None = None
    smart_private_key: Path | None = None
    smart_kid: str | None = None
    smart_scopes: str = "system/*.read system/*.write"
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retry_seconds: float = 30.0
    page_cap: int = 50
    # Billing days a batch run (`process --since`) decides at once, each on its own connection:
    # enough to keep a production EHR busy, few enough not to crowd out its clinical users
    concurrency: int = 4

    @property
    def uses_smart(self) -> bool:
        return self.smart_client_id is not None
