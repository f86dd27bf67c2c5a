"""`theracharge demo`: the whole product on one machine, against a real FHIR server.

Starts the sandbox EHR (sekmet-fhir, 127.0.0.1, fresh database, SMART Backend Services on, with
TheraCharge registered by a key pair made on the first run), loads a synthetic clinic day, starts
TheraCharge under gunicorn, subscribes it to finished encounters, then plays the EHR: some visits
through signed `encounter-discharge` hook calls, the rest by finishing their Encounters so the
Subscription notifies TheraCharge. Prints a report and leaves everything running until Ctrl-C
(or stops at once with --once), stopping every process it started by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fhir_mappings.subscription import subscription
from plugin.commands.billing_standin import BillingStandIn
from plugin.commands.millennium_standin import MillenniumStandIn, proxy_to
from plugin.config.files import load_settings
from plugin.config.tokens import token_hash
from plugin.gateway.client import iter_resources
from plugin.gateway.factory import connect
from plugin.jsontypes import Json
from plugin.pipeline.hooks import prefetch_from
from plugin.render.report import by_count, count_lines, status_words
from plugin.sample import SampleSpec, as_transaction, generate, us_core

# The demo tenant's bill-code set-up (config/outlet.yaml's oracle_health; values invented)
ORACLE_SITE = """source: demo tenant (invented schedule codes)
oracle_health:
  tenant: demo-tenant
  schedules: {CPT: "615214", HCPCS: "615215", ICD: "615216", MODIFIER: "615217"}
"""
CLIENT_ID = "theracharge"
EHR_ISSUER = "http://127.0.0.1/demo-ehr"
SECRET = "demo-notification-secret"
API_TOKEN = "demo-api-token"


@dataclass
class Demo:
    root: Path  # .demo/: fresh each run
    keys: Path  # .demo-keys/: made on the first run, kept
    sekmet: str
    visits: int = 16
    seed: int = 2026
    # how the sandbox EHR holds the day: as a US Core 6.1 EHR writes it (roles in
    # PractitionerRole.specialty, a signed plan document), or our own sample's way
    shape: str = "us-core"
    # where the charges go: the EHR's ChargeItems (fhir), or DFT^P03 messages to a stand-in
    # billing system over MLLP (hl7v2)
    outlet: str = "fhir"
    billing: BillingStandIn | None = None
    millennium: MillenniumStandIn | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ehr_url: str = ""
    service_url: str = ""

    # --- set-up -----------------------------------------------------------------------------

    def start(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "ehr").mkdir(parents=True)
        tc_key, tc_jwks = self._key("theracharge", "tc-demo-1")
        _, ehr_jwks = self._key("ehr", "ehr-demo-1")
        (self.root / "ehr-jwks.json").write_text(json.dumps(ehr_jwks))
        ehr_port, tc_port = _free_port(), _free_port()
        self.ehr_url = f"http://127.0.0.1:{ehr_port}/fhir"
        self.service_url = f"http://127.0.0.1:{tc_port}"
        site: dict[str, str] = {}
        if self.outlet == "oracle-health":  # Millennium's ChargeItem API in front of the EHR
            upstream = proxy_to(self.ehr_url)
            self.millennium = MillenniumStandIn(_free_port(), "/fhir", upstream)
            self.millennium.start()
            self.ehr_url = self.millennium.base  # the EHR names it as its base
            (self.root / "site").mkdir()
            (self.root / "site" / "outlet.yaml").write_text(ORACLE_SITE)
            site = {
                "THERACHARGE_OUTLET": "oracle-health",
                "THERACHARGE_CONFIG_DIR": str(self.root / "site"),
            }
        self._start_ehr(ehr_port, tc_jwks)
        self.env = {
            **os.environ,
            "THERACHARGE_FHIR_BASE_URL": self.ehr_url,
            **(
                {
                    "THERACHARGE_SMART_CLIENT_ID": CLIENT_ID,
                    "THERACHARGE_SMART_PRIVATE_KEY": str(tc_key),
                    "THERACHARGE_SMART_KID": "tc-demo-1",
                }
                if self.millennium is None
                else {}
            ),
            "THERACHARGE_CDS_ISSUERS": EHR_ISSUER,
            "THERACHARGE_CDS_JWKS": str(self.root / "ehr-jwks.json"),
            "THERACHARGE_WRITE_MODE": "direct",
            "THERACHARGE_NOTIFICATION_SECRET": SECRET,
            "THERACHARGE_API_TOKENS": f"demo:admin=sha256:{token_hash(API_TOKEN)}",
            "THERACHARGE_INSTANCE_DIR": str(self.root / "instance"),
            "THERACHARGE_PUBLIC_URL": self.service_url,
            **site,
        }
        if self.outlet == "hl7v2":  # the billing system the charges go to, over MLLP
            self.billing = BillingStandIn()
            port = self.billing.start()
            self.env |= {
                "THERACHARGE_OUTLET": "hl7v2",
                "THERACHARGE_HL7_HOST": "127.0.0.1",
                "THERACHARGE_HL7_PORT": str(port),
            }
        self.settings = load_settings(self.env)
        self.client = connect(self.settings.fhir)
        self._start_service(tc_port)

    def _key(self, name: str, kid: str) -> tuple[Path, Json]:
        """An EC P-384 key pair (ES384), made once and kept in .demo-keys/."""
        self.keys.mkdir(parents=True, exist_ok=True)
        path = self.keys / f"{name}-private.pem"
        if not path.exists():
            key = ec.generate_private_key(ec.SECP384R1())
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            path.chmod(0o600)
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))  # type: ignore[arg-type]
        public.update({"kid": kid, "alg": "ES384", "use": "sig"})
        return path, {"keys": [public]}

    def _start_ehr(self, port: int, tc_jwks: Json) -> None:
        settings = {
            "base_url": self.ehr_url,
            "host": "127.0.0.1",
            "port": port,
            "db_path": str(self.root / "ehr" / "ehr.db"),
            # behind the Millennium stand-in the sandbox EHR is open on 127.0.0.1 (Millennium's
            # own SMART Backend Services is not played); otherwise it requires SMART tokens
            "server_auth": {"types": ["none"]}
            if self.millennium is not None
            else {
                "types": ["smart"],
                "token_lifetime": 3600,
                "enforce_scopes": True,
                "smart_clients": [
                    {
                        "client_id": CLIENT_ID,
                        "jwks": tc_jwks,
                        "scopes": "system/*.read system/*.write",
                    }
                ],
            },
            "validation": {"inbound": "strict"},
            "simulator": {"enabled": False},
            "log_inbound": False,
        }
        (self.root / "ehr" / "settings.yaml").write_text(yaml.safe_dump(settings))
        self._spawn([self.sekmet, "serve", "-c", str(self.root / "ehr" / "settings.yaml")], "ehr")
        _wait(f"{self.ehr_url}/metadata", (200, 401))

    def _start_service(self, port: int) -> None:
        command = [
            str(Path(sys.executable).with_name("theracharge")),
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
        ]
        self._spawn(command, "theracharge", self.env)
        _wait(f"{self.service_url}/readyz", (200,))

    def _spawn(self, command: list[str], name: str, env: dict[str, str] | None = None) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        )

    def stop(self) -> None:
        if self.billing is not None:
            self.billing.stop()
        if self.millennium is not None:
            self.millennium.stop()
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    # --- the clinic day -----------------------------------------------------------------------

    def load_day(self) -> tuple[list[str], list[str]]:
        """Load the sample day: half the morning visits come through hooks, the other half and
        every afternoon session (`-pm`, the patient's second visit of the day) are still open
        and finish later, through the Subscription — their day is decided again."""
        resources = list(generate(demo_sample(self.visits, self.seed)))
        if self.shape == "us-core":
            resources = list(us_core(resources))
        encounters = [r["id"] for r in resources if r["resourceType"] == "Encounter"]
        mornings = [e for e in encounters if not e.endswith("-pm")]
        by_hook = mornings[::2]
        by_notification = [e for e in encounters if e not in by_hook]
        for resource in resources:
            if resource["resourceType"] == "Encounter" and resource["id"] in by_notification:
                resource["status"] = "in-progress"
        self.client.transaction(as_transaction(resources))
        return by_hook, by_notification

    def subscribe(self) -> None:
        body = subscription(
            f"{self.service_url}/notifications/fhir",
            self.settings.service.notification_header,
            SECRET,
        )
        self.client.create("Subscription", body)

    def call_hook(self, encounter_id: str) -> Json:
        """As the EHR: prefetch with our templates, sign a JWT, call the hook."""
        prefetch = prefetch_from(self.client, encounter_id)
        patient = prefetch["encounter"]["subject"]["reference"].split("/", 1)[1]
        url = f"{self.service_url}/cds-services/therapy-charges"
        now = int(time.time())
        token = jwt.encode(
            {"iss": EHR_ISSUER, "aud": url, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())},
            self._ehr_private(),
            algorithm="ES384",
            headers={"kid": "ehr-demo-1"},
        )
        body = {
            "hook": "encounter-discharge",
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": self.ehr_url,
            "context": {
                "userId": "PractitionerRole/role-pt-225100000x-1",
                "patientId": patient,
                "encounterId": encounter_id,
            },
            "prefetch": prefetch,
        }
        answer = requests.post(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        answer.raise_for_status()
        return dict(answer.json())

    def _ehr_private(self) -> Any:
        return serialization.load_pem_private_key(
            (self.keys / "ehr-private.pem").read_bytes(), None
        )

    def finish(self, encounter_id: str) -> None:
        """As the EHR: the therapist signs the visit; the Subscription notifies TheraCharge."""
        encounter = self.client.read(f"Encounter/{encounter_id}")
        encounter["status"] = "finished"
        self.client.transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": encounter,
                        "request": {"method": "PUT", "url": f"Encounter/{encounter_id}"},
                    }
                ],
            }
        )

    def wait_for_runs(self, notified: list[str], everyone: list[str], timeout: float = 90) -> None:
        """Until every notification is processed and every encounter of the day has its run in
        the ledger (the service writes ledger rows in batches, a moment after it answers)."""
        from plugin.store import Store

        store = Store(self.settings.service.database_url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = {n.encounter_id for n in store.notifications() if n.status in ("done", "failed")}
            recorded = {run.encounter_id for run in store.runs(limit=1000)}
            if set(notified) <= done and set(everyone) <= recorded:
                return
            time.sleep(0.5)
        raise TimeoutError("the day's visits were not all processed in time")

    def charge_items(self) -> list[Json]:
        page = self.client.search("ChargeItem?_count=200")
        return list(iter_resources(page.entries))


def demo_sample(visits: int, seed: int) -> SampleSpec:
    """The demo's clinic day: a third of the visits with a documentation problem, a quarter of
    the patients seen again in the afternoon."""
    return SampleSpec(visits=visits, seed=seed, problem_rate=0.35, second_visits=0.25)


def report(demo: Demo, hooks: list[Json], items: list[Json]) -> Json:
    """What the day came to, from the EHR's own ChargeItems and TheraCharge's run ledger."""
    from plugin.store import Store

    ours = [
        i
        for i in items
        if any(x.get("system", "").endswith("/charge-line") for x in i.get("identifier", []))
    ]
    statuses = Counter(i["status"] for i in ours)
    units: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    for item in ours:
        code = item["code"]["coding"][0]["code"]
        method = next(
            (
                e["valueCoding"]["code"]
                for e in item.get("extension", [])
                if e["url"].endswith("/billing-method")
            ),
            "?",
        )
        units[f"{code} ({method})"] += item["quantity"]["value"]
        methods[method] += 1
    store = Store(demo.settings.service.database_url)
    runs = store.runs(limit=1000)
    # each billing day's latest decision, counted as the worklist and the dashboard count it
    latest = [ln for run in store.latest_runs() for ln in run.lines if isinstance(ln, dict)]
    counts = count_lines(latest)
    held, warned = counts.held, counts.warned
    dates = sorted(str(ln["date"]) for ln in latest if ln.get("date"))
    encounters = sorted({run.encounter_id for run in runs})
    shared = {str(run.day) for run in runs if run.day and len(_encounters_of(run.report)) > 1}
    types = demo.settings.findings.types
    return {
        "visits_processed": len(encounters),
        "by_hook": sum(1 for r in runs if r.trigger == "cds-hook"),
        "by_notification": sum(1 for r in runs if r.trigger == "notification"),
        "days_with_two_visits": len(shared),
        "charge_items_by_status": dict(statuses),
        # the ledger's lines, counted as the dashboard and the worklist count them
        "lines_by_status": dict(sorted(counts.statuses.items())),
        "billable_units_by_code": dict(sorted(counts.billable_units.items())),
        "units_by_code_and_method": dict(sorted(units.items())),
        "lines_by_method": dict(methods),
        "held_lines_by_reason": [
            {"code": c, "title": types[c].title, "count": n, "fix": types[c].fix}
            for c, n in by_count(held)
        ],
        "lines_with_warnings_by_kind": [
            {"code": c, "title": types[c].title, "count": n, "fix": types[c].fix}
            for c, n in by_count(warned)
        ],
        "cards_returned": sum(len(h.get("cards", [])) for h in hooks),
        "outlet": demo.outlet,
        **({"billing_system": demo.billing.summary()} if demo.billing is not None else {}),
        **({"millennium": demo.millennium.book.summary()} if demo.millennium else {}),
        "urls": {
            "worklist": f"{demo.service_url}/worklist",
            "decision_page": f"{demo.service_url}/decisions/{encounters[0]}"
            if encounters
            else None,
            "admin_page": f"{demo.service_url}/admin/mappings",
            "tables_page": f"{demo.service_url}/admin/tables",
            # the clinic day's period, so the dashboard opens on it
            "dashboard": f"{demo.service_url}/dashboard"
            + (f"?since={dates[0]}&until={dates[-1]}" if dates else ""),
            "api_docs": f"{demo.service_url}/api-docs",
            "service": demo.service_url,
            "openapi": f"{demo.service_url}/openapi.json",
            "readiness": f"{demo.service_url}/readyz",
            "metrics": f"{demo.service_url}/metrics",
            "a_decision": f"{demo.service_url}/api/v1/encounters/{encounters[0]}/charges"
            if encounters
            else None,
            "ehr": demo.ehr_url,
        },
        "api_token": API_TOKEN,
    }


def _lines(count: int) -> str:
    return "1 line" if count == 1 else f"{count} lines"


def _encounters_of(report: object) -> list[object]:
    listed = report.get("encounters") if isinstance(report, dict) else None
    return listed if isinstance(listed, list) else []


def print_report(body: Json, running: bool = True) -> None:
    """What the day came to; the addresses to look further only while the servers run."""
    print("\nTheraCharge demo: a clinic day through a real FHIR server")
    print(
        f"  visits processed: {body['visits_processed']} "
        f"({body['by_hook']} by CDS hook, {body['by_notification']} by Subscription)"
    )
    print(
        f"  billing days with a second visit: {body['days_with_two_visits']} "
        "(their minutes counted together: CMS Pub 100-04 ch.5 §20.2 C)"
    )
    billing = body.get("billing_system")
    millennium = body.get("millennium")
    if millennium is not None:  # --outlet oracle-health: what Millennium's ChargeItems hold
        operations = ", ".join(f"{n} {op}" for op, n in sorted(millennium["operations"].items()))
        print(
            f"  Oracle Health (stand-in) took {operations or 'no operation'}; it holds "
            f"{millennium['billable_items']} billable ChargeItem(s)"
        )
        print("  billable units by code and modifiers:")
        for code, units in millennium["units_by_code"].items():
            print(f"    {code:<14} {units:>3}")
    elif billing is not None:  # --outlet hl7v2: what the billing system got over MLLP
        print(
            f"  the billing system got {billing['messages']} DFT^P03 message(s) "
            f"({len(billing['messages_by_patient'])} patient(s)): {billing['charges']} "
            f"charge(s), {billing['credits']} credit(s); ACKs "
            + ", ".join(f"{n} {c}" for c, n in sorted(billing["acks"].items()))
        )
        print("  units posted by code and modifiers:")
        for code, units in billing["units_by_code"].items():
            print(f"    {code:<14} {units:>3}")
    else:
        print(f"  ChargeItems in the EHR: {status_words(body['charge_items_by_status'])}")
    print(f"  charge lines (as the dashboard counts them): {status_words(body['lines_by_status'])}")
    print("  billable units by code (as the dashboard counts them):")
    for code, units in body["billable_units_by_code"].items():
        print(f"    {code:<14} {units:>3}")
    print(
        "  held lines by reason (as the hold worklist counts them; a line held for two "
        "reasons counts under each):"
    )
    for gap in body["held_lines_by_reason"][:6]:
        print(f"    {gap['title']} ({gap['code']}): {_lines(gap['count'])}. {gap['fix']}")
    if not body["held_lines_by_reason"]:
        print("    none")
    print("  billable lines with warnings, by kind (worklist, Show: lines with warnings):")
    for gap in body["lines_with_warnings_by_kind"][:6]:
        print(f"    {gap['title']} ({gap['code']}): {_lines(gap['count'])}. {gap['fix']}")
    if not body["lines_with_warnings_by_kind"]:
        print("    none")
    urls = body["urls"]
    if not running:  # --once: the servers stop with the report; no address to visit
        print("  (--once: the EHR and TheraCharge stop now; report.json and the EHR's")
        print("   ChargeItems (ehr-chargeitems.json) are kept in .demo/)")
        return
    print(f"  sign in with the token {body['api_token']!r}, then:")
    print(f"    hold worklist: {urls['worklist']}")
    if urls["decision_page"]:
        print(f"    a decision:    {urls['decision_page']}")
    print(f"    dashboard:     {urls['dashboard']}")
    print(f"    admin tables:  {urls['tables_page']} (mappings: {urls['admin_page']})")
    print(f"  service: {urls['service']}  (API docs {urls['api_docs']}, OpenAPI {urls['openapi']})")
    if urls["a_decision"]:
        auth = f"Authorization: Bearer {body['api_token']}"
        print(f"  the same as JSON: curl -H '{auth}' {urls['a_decision']}")
    print(f"  the EHR: {urls['ehr']}")
    print("  (the ports are chosen afresh on each run)")


def run(
    root: Path,
    keys: Path,
    sekmet: str,
    once: bool,
    visits: int,
    shape: str = "us-core",
    outlet: str = "fhir",
) -> int:
    if not Path(sekmet).is_file():
        print(f"demo: sekmet-fhir not found at {sekmet}; run `make demo`", file=sys.stderr)
        return 2
    demo = Demo(root, keys, sekmet, visits=visits, shape=shape, outlet=outlet)
    try:
        print("starting the sandbox EHR and TheraCharge …", file=sys.stderr)
        demo.start()
        by_hook, by_notification = demo.load_day()
        demo.subscribe()
        hooks = [demo.call_hook(e) for e in by_hook]
        for encounter in by_notification:
            demo.finish(encounter)
        demo.wait_for_runs(by_notification, by_hook + by_notification)
        items = demo.charge_items()
        body = report(demo, hooks, items)
        (root / "report.json").write_text(json.dumps(body, indent=2))
        (root / "ehr-chargeitems.json").write_text(json.dumps(items))
        print_report(body, running=not once)
        if not once:
            print("\nEverything is running; Ctrl-C stops it.", file=sys.stderr)
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # wait for them, not interrupted
            signal.sigwait(stop)
            print("stopping …", file=sys.stderr)
    finally:
        demo.stop()
    return 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(url: str, statuses: tuple[int, ...], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code in statuses:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not come up")
