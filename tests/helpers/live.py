"""Against the sandbox EHR: our ChargeItems on it, and a service's settings for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plugin.config.files import Settings
from plugin.config.tokens import token_hash
from tests.conftest import ISSUER
from tests.ehr import Ehr

SECRET = "notify-me"


def ours(ehr: Ehr, settings: Settings) -> dict[str, dict[str, Any]]:
    """Our ChargeItems on the server, by line key."""
    system = f"{settings.extension_base}/NamingSystem/charge-line"
    found: dict[str, dict[str, Any]] = {}
    for item in ehr.search("ChargeItem?_count=100"):
        for ident in item.get("identifier", []):
            if ident.get("system") == system:
                assert ident["value"] not in found, f"two ChargeItems for {ident['value']}"
                found[ident["value"]] = item
    return found


def env_for(ehr: Ehr, tmp_path: Path, jwks_file: Path, **extra: str) -> dict[str, str]:
    return {
        "THERACHARGE_INSTANCE_DIR": str(tmp_path / "instance"),
        "THERACHARGE_FHIR_BASE_URL": ehr.base_url,
        "THERACHARGE_CDS_ISSUERS": ISSUER,
        "THERACHARGE_CDS_JWKS": str(jwks_file),
        "THERACHARGE_PUBLIC_URL": "http://localhost",
        "THERACHARGE_NOTIFICATION_SECRET": SECRET,
        "THERACHARGE_API_TOKENS": f"billing=sha256:{token_hash('api-token')}",
        **extra,
    }
