"""Settings from THERACHARGE_* environment variables: the EHR connection and the service."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from plugin.config.tokens import ROLES
from plugin.gateway.connection import FhirConnection
from plugin.schemas.errors import ConfigError

WRITE_MODES = ("direct", "system-actions", "preview")
# A visit's hook call with prefetch is tens of kB; a day of 200 procedures a few hundred.
DEFAULT_MAX_REQUEST_BYTES = 5 * 1024 * 1024
# A therapy visit documents a handful of procedures; hundreds are an error or an attack.
DEFAULT_MAX_PROCEDURES = 200
# gunicorn's worker timeout (plugin/web/server.py): no request's EHR work may come near it.
WORKER_TIMEOUT_SECONDS = 60
MOST_BUDGET_SECONDS = 45.0


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """The HTTP service: its database, how it delivers, whom it trusts."""

    database_url: str = "sqlite:///instance/theracharge.db"
    instance_dir: str = "instance"
    secret_key: str | None = field(default=None, repr=False)  # signs the pages' session cookie
    write_mode: str = "preview"
    cds_auth: bool = True
    cds_issuers: tuple[str, ...] = ()
    cds_jwks: Mapping[str, str] = field(default_factory=dict)  # issuer ("*" = any) → path or URL
    fhir_server_allowlist: tuple[str, ...] = ()
    # sha256 hex of a token → (who, role): admin changes, billing reads and works the queue,
    # viewer reads
    api_tokens: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    notification_secret: str | None = field(default=None, repr=False)
    notification_header: str = "X-TheraCharge-Secret"
    public_url: str | None = None  # how the EHR reaches us: the audience of CDS clients' JWTs
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # a larger body: 413, never read
    max_procedures: int = DEFAULT_MAX_PROCEDURES  # per visit; more is refused (422)
    # a claim not renewed for this long is taken again (a live worker renews its claims every
    # third of it: plugin/store/queue.py Heartbeat)
    notification_claim_seconds: float = 60.0
    # The time a CDS Hooks call may spend on the EHR (reads, the day lock, the write) before it
    # answers with what the prefetch tells and queues the day (CDS clients wait seconds)
    hook_budget_seconds: float = 4.0
    # The same for every other request that reaches the EHR (the charges API, a page's SMART
    # launch): then 504 with Retry-After
    request_budget_seconds: float = 20.0
    access_log: bool = False  # gunicorn's access log, as JSON lines, credentials redacted
    ledger_retention_days: float = 90.0  # run ledger rows older than this are deleted
    ledger_keep_preview: bool = False  # preview-only hook calls leave no ledger row
    # our client id as a SMART app registered with the EHR: cards then carry a SMART app link
    smart_app_client_id: str | None = None
    # Celery's broker (Redis): background work runs on `theracharge worker` processes; None:
    # in each web process's own thread, as the embedded default (docs/deployment.md)
    broker_url: str | None = field(default=None, repr=False)  # may carry a password
    sweep_seconds: float = 30.0  # how often recorded work the broker lost is handed over again
    # HL7 v2 events in over MLLP (plugin/pipeline/events.py): where `serve` listens, which
    # events it takes, and from which addresses (empty: any)
    hl7_listen: tuple[str, int] | None = None
    hl7_events: tuple[str, ...] = ("ADT^A03", "MDM^T02", "MDM^T04")
    hl7_listen_peers: tuple[str, ...] = ()

    @property
    def shared_database(self) -> bool:
        """PostgreSQL: several instances share every piece of state through it."""
        return not self.database_url.startswith("sqlite")


OUTLETS = ("fhir", "hl7v2", "oracle-health")


@dataclass(frozen=True, slots=True)
class OutletConnection:
    """Where the day's charges go (README "Connecting Epic or a billing system over HL7 v2"):
    `fhir` (ChargeItems in the EHR, the default), `oracle-health` (ChargeItem/$create, $modify,
    $credit on an Oracle Health Millennium EHR) or `hl7v2` (DFT^P03 over MLLP to the billing
    system's listener, usually the site's interface engine)."""

    kind: str = "fhir"
    hl7_host: str | None = None
    hl7_port: int | None = None
    hl7_ack_timeout: float = 30.0  # seconds a message waits for its ACK
    hl7_attempts: int = 3  # sends of one message (the same control id) before the run fails
    hl7_connect_timeout: float = 5.0


def outlet_connection(env: Mapping[str, str], service: ServiceConfig) -> OutletConnection:
    """The outlet from the environment; a missing or contradictory setting is named."""
    kind = env.get("THERACHARGE_OUTLET", "").strip() or "fhir"
    if kind not in OUTLETS:
        raise ConfigError(f"THERACHARGE_OUTLET: {kind!r} is not one of {', '.join(OUTLETS)}")
    if kind in ("fhir", "oracle-health"):  # both write to the EHR (THERACHARGE_FHIR_*)
        if kind == "oracle-health" and service.write_mode == "system-actions":
            raise ConfigError(
                "THERACHARGE_WRITE_MODE: system-actions proposes FHIR ChargeItems for the EHR "
                "to apply; Oracle Health takes charges only through its operations: use direct "
                "or preview"
            )
        return OutletConnection(kind=kind)
    host = env.get("THERACHARGE_HL7_HOST", "").strip()
    port = env.get("THERACHARGE_HL7_PORT", "").strip()
    missing = [
        n for n, v in (("THERACHARGE_HL7_HOST", host), ("THERACHARGE_HL7_PORT", port)) if not v
    ]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: needed with THERACHARGE_OUTLET=hl7v2")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"THERACHARGE_HL7_PORT: {port!r} is not a port number (1-65535)")
    if service.write_mode == "system-actions":
        raise ConfigError(
            "THERACHARGE_WRITE_MODE: system-actions proposes FHIR ChargeItems for the EHR to "
            "apply; with THERACHARGE_OUTLET=hl7v2 use direct or preview"
        )
    return OutletConnection(
        kind=kind,
        hl7_host=host,
        hl7_port=int(port),
        hl7_ack_timeout=_number(env, "THERACHARGE_HL7_ACK_TIMEOUT_SECONDS", 30.0),
        hl7_attempts=_whole(env, "THERACHARGE_HL7_ATTEMPTS", 3, 10),
        hl7_connect_timeout=_number(env, "THERACHARGE_HL7_CONNECT_TIMEOUT", 5.0),
    )


def fhir_connection(env: Mapping[str, str]) -> FhirConnection:
    """The EHR connection from the environment; every inconsistency is named."""
    base = env.get("THERACHARGE_FHIR_BASE_URL", "").strip() or None
    if base is not None:
        base = url_setting(env, "THERACHARGE_FHIR_BASE_URL", base).rstrip("/")
    smart = {
        name: env.get(f"THERACHARGE_SMART_{name}", "").strip() or None
        for name in ("CLIENT_ID", "PRIVATE_KEY", "KID")
    }
    given = [f"THERACHARGE_SMART_{k}" for k, v in smart.items() if v]
    if given and len(given) != len(smart):
        missing = [f"THERACHARGE_SMART_{k}" for k, v in smart.items() if not v]
        raise ConfigError(f"{', '.join(missing)}: needed with {', '.join(given)}")
    token = env.get("THERACHARGE_FHIR_TOKEN", "").strip() or None
    if token and given:
        raise ConfigError("THERACHARGE_FHIR_TOKEN: give a static token or SMART settings, not both")
    key = Path(smart["PRIVATE_KEY"]) if smart["PRIVATE_KEY"] else None
    if key is not None and not key.is_file():
        raise ConfigError(f"THERACHARGE_SMART_PRIVATE_KEY: {key} is not a file")
    return FhirConnection(
        base_url=base,
        token=token,
        smart_client_id=smart["CLIENT_ID"],
        smart_private_key=key,
        smart_kid=smart["KID"],
        smart_scopes=env.get("THERACHARGE_SMART_SCOPES", "").strip()
        or "system/*.read system/*.write",
        connect_timeout=_number(env, "THERACHARGE_FHIR_CONNECT_TIMEOUT", 5.0),
        read_timeout=_number(env, "THERACHARGE_FHIR_READ_TIMEOUT", 30.0),
        retry_seconds=_number(env, "THERACHARGE_FHIR_RETRY_SECONDS", 30.0),
        page_cap=int(_number(env, "THERACHARGE_FHIR_PAGE_CAP", 50)),
        concurrency=_whole(env, "THERACHARGE_FHIR_CONCURRENCY", 4, 64),
    )


def _whole(env: Mapping[str, str], name: str, default: int, most: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise ConfigError(f"{name}: {text!r} is not a whole number from 1 to {most}")
    return int(text)


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {text!r} is not a number") from exc
    if value <= 0:
        raise ConfigError(f"{name}: must be more than 0, got {text}")
    return value


def service_config(env: Mapping[str, str]) -> ServiceConfig:
    """The service's settings from the environment; every inconsistency is named."""
    mode = env.get("THERACHARGE_WRITE_MODE", "").strip() or "preview"
    if mode not in WRITE_MODES:
        raise ConfigError(
            f"THERACHARGE_WRITE_MODE: {mode!r} is not one of {', '.join(WRITE_MODES)}"
        )
    auth = env.get("THERACHARGE_CDS_AUTH", "").strip() or "enabled"
    if auth not in ("enabled", "disabled"):
        raise ConfigError(f"THERACHARGE_CDS_AUTH: {auth!r} is not enabled or disabled")
    issuers = _list(env, "THERACHARGE_CDS_ISSUERS")
    jwks = _jwks(env.get("THERACHARGE_CDS_JWKS", "").strip())
    if auth == "enabled" and issuers and not jwks:
        raise ConfigError("THERACHARGE_CDS_JWKS: needed to verify THERACHARGE_CDS_ISSUERS")
    folder = Path(env.get("THERACHARGE_INSTANCE_DIR", "").strip() or "instance").resolve()
    database = env.get("THERACHARGE_DATABASE_URL", "").strip()
    if not database:
        database = f"sqlite:///{folder / 'theracharge.db'}"
    public = env.get("THERACHARGE_PUBLIC_URL", "").strip() or None
    if public:
        public = url_setting(env, "THERACHARGE_PUBLIC_URL", public).rstrip("/")
    return ServiceConfig(
        database_url=database,
        instance_dir=str(folder),
        secret_key=env.get("THERACHARGE_SECRET_KEY", "").strip() or None,
        write_mode=mode,
        cds_auth=auth == "enabled",
        cds_issuers=issuers,
        cds_jwks=jwks,
        fhir_server_allowlist=tuple(
            u.rstrip("/") for u in _list(env, "THERACHARGE_FHIR_SERVER_ALLOWLIST")
        ),
        api_tokens=_api_tokens(env.get("THERACHARGE_API_TOKENS", "")),
        notification_secret=env.get("THERACHARGE_NOTIFICATION_SECRET", "").strip() or None,
        notification_header=env.get("THERACHARGE_NOTIFICATION_HEADER", "").strip()
        or "X-TheraCharge-Secret",
        public_url=public,
        max_request_bytes=int(
            _number(env, "THERACHARGE_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES)
        ),
        max_procedures=int(_number(env, "THERACHARGE_MAX_PROCEDURES", DEFAULT_MAX_PROCEDURES)),
        ledger_retention_days=_number(env, "THERACHARGE_LEDGER_RETENTION_DAYS", 90.0),
        notification_claim_seconds=_number(env, "THERACHARGE_NOTIFICATION_CLAIM_SECONDS", 60.0),
        hook_budget_seconds=_budget(env, "THERACHARGE_HOOK_BUDGET_SECONDS", 4.0),
        request_budget_seconds=_budget(env, "THERACHARGE_REQUEST_BUDGET_SECONDS", 20.0),
        access_log=_flag(env, "THERACHARGE_ACCESS_LOG"),
        ledger_keep_preview=_flag(env, "THERACHARGE_LEDGER_KEEP_PREVIEW"),
        smart_app_client_id=env.get("THERACHARGE_SMART_APP_CLIENT_ID", "").strip() or None,
        broker_url=_broker(env),
        sweep_seconds=_number(env, "THERACHARGE_SWEEP_SECONDS", 30.0),
        hl7_listen=_address(env, "THERACHARGE_HL7_LISTEN"),
        hl7_events=_events(env),
        hl7_listen_peers=_list(env, "THERACHARGE_HL7_LISTEN_PEERS"),
    )


def _address(env: Mapping[str, str], name: str) -> tuple[str, int] | None:
    """host:port (e.g. 0.0.0.0:2575), or unset."""
    text = env.get(name, "").strip()
    if not text:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name}: {text!r} is not host:port (e.g. 0.0.0.0:2575)")
    return host.strip("[]"), int(port)


def _events(env: Mapping[str, str]) -> tuple[str, ...]:
    """The HL7 v2 message types the listener takes, as TYPE^TRIGGER."""
    events = _list(env, "THERACHARGE_HL7_EVENTS") or ("ADT^A03", "MDM^T02", "MDM^T04")
    for event in events:
        kind, _, trigger = event.partition("^")
        if not (kind.isalnum() and len(kind) == 3 and trigger.isalnum() and len(trigger) == 3):
            raise ConfigError(f"THERACHARGE_HL7_EVENTS: {event!r} is not TYPE^TRIGGER (ADT^A03)")
    return events


def _budget(env: Mapping[str, str], name: str, default: float) -> float:
    """A request's time budget: more than 0, and well inside gunicorn's worker timeout (a
    request that reaches it is killed with an HTML 500 and takes the worker with it)."""
    value = _number(env, name, default)
    if value > MOST_BUDGET_SECONDS:
        raise ConfigError(
            f"{name}: {value:g} s is too long; at most {MOST_BUDGET_SECONDS:g} s, inside the "
            f"{WORKER_TIMEOUT_SECONDS} s worker timeout"
        )
    return value


def _broker(env: Mapping[str, str]) -> str | None:
    url = env.get("THERACHARGE_BROKER_URL", "").strip()
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://")):
        # the value is not echoed: it may carry the broker's password
        raise ConfigError("THERACHARGE_BROKER_URL: expected a redis:// or rediss:// URL")
    return url


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower() or "false"
    if text not in ("true", "false"):
        raise ConfigError(f"{name}: {text!r} is not true or false")
    return text == "true"


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _jwks(value: str) -> dict[str, str]:
    """One JWKS path or URL for every issuer, or a JSON object: issuer → path or URL."""
    if not value:
        return {}
    if value.startswith("{"):
        try:
            mapping = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"THERACHARGE_CDS_JWKS: not valid JSON ({exc})") from exc
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ConfigError("THERACHARGE_CDS_JWKS: expected an object of issuer → path or URL")
        return {str(k): v for k, v in mapping.items()}
    return {"*": value}


def _api_tokens(value: str) -> dict[str, tuple[str, str]]:
    """`name[:role]=sha256:<hex>` entries: the hash of each token, never the token (README)."""
    tokens: dict[str, tuple[str, str]] = {}
    for index, part in enumerate(p.strip() for p in value.split(",") if p.strip()):
        who, _, digest = part.rpartition("=")
        name, _, role = (who or f"token{index + 1}").partition(":")
        role = role or "billing"
        digest = digest.removeprefix("sha256:").lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(
                f"THERACHARGE_API_TOKENS[{index}]: expected name[:role]=sha256:<64 hex digits> "
                "(theracharge token-hash prints it)"
            )
        if role not in ROLES:
            raise ConfigError(
                f"THERACHARGE_API_TOKENS[{index}]: role {role!r} is not one of {', '.join(ROLES)}"
            )
        tokens[digest] = (name, role)
    return tokens


def url_setting(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: {value!r} is not an http(s) URL")
    return value
