"""A stateful stand-in for Oracle Health Millennium's ChargeItem API, a real HTTP server on
127.0.0.1, enforcing the contract its pages publish (Millennium Platform APIs: ChargeItem,
$create, $modify, $credit; see plugin/outlets/oracle.py):
- `$create`: a Parameters of `transactionId` and one `chargeItem` with status `unknown`,
  subject, context, occurrence, quantity and one `code` coding from a bill-code system with
  its schedule extension; a field it does not support (identifier, priceOverride, enterer,
  account, supportingInformation, bodysite) or an extension it does not know is 422; a missing
  required field 500 `required`. It answers 200 with no body and no id.
- `$modify` needs the `replacing` extension naming the item and its current `item-version`
  (409 otherwise); `$credit` its current `versionId` (409 otherwise). Both answer 201 with
  the new item's Location.
- `ChargeItem?context=…&-status=billable` lists the encounter's billable items.
It also plays the rest of the EHR the day is read from: its CapabilityStatement and one
Encounter search answering the day's resources (`record`) with the encounter's ChargeItems.
`fail_next(status, text)` answers the next operation with an error; `lose_next()` does the
next operation and answers 503, as a gateway that lost the answer would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.ehr import free_port

EXT = "https://fhir-ehr.cerner.com/r4/StructureDefinition/"
KNOWN_EXTENSIONS = {
    EXT + n
    for n in ("modifier-code", "procedure-code", "performing-location", "revenue-code",
              "custom-attribute", "replacing")
}  # fmt: skip
UNSUPPORTED = ("identifier", "priceOverride", "enterer", "account", "supportingInformation",
               "bodysite")  # fmt: skip
TIERS = ("CDM_SCHED", "CPT", "HCPCS", "PROCCODE")
Answer = tuple[int, dict[str, Any] | None, str]  # status, body, Location


@dataclass
class FakeMillennium:
    port: int
    record: list[dict[str, Any]] = field(default_factory=list)  # the day's other resources
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (path, body)
    transactions: list[str] = field(default_factory=list)
    _faults: list[tuple[int, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 1000

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/r4/tenant-1"

    def fail_next(self, status: int, text: str) -> None:
        self._faults.append((status, text))

    def lose_next(self) -> None:
        self._faults.append((0, "lost"))

    def billable(self) -> list[dict[str, Any]]:
        return [i for i in self.items.values() if i["status"] == "billable"]

    # --- the operations --------------------------------------------------------------------

    def operate(self, path: str, body: dict[str, Any]) -> Answer:
        """(status, answer, Location) of one operation."""
        with self._lock:
            self.calls.append((path, body))
            fault = self._faults.pop(0) if self._faults else None
            if fault is not None and fault[0]:
                return fault[0], _outcome("business-rule", fault[1]), ""
            params = {p["name"]: p for p in body.get("parameter", [])}
            if body.get("resourceType") != "Parameters" or "transactionId" not in params:
                return 400, _outcome("invalid", "a Parameters with a transactionId"), ""
            self.transactions.append(params["transactionId"].get("valueUuid", ""))
            parts = path.strip("/").split("/")
            if parts[-1] == "$create":
                status, answer, location = self._create(params)
            elif parts[-1] == "$modify":
                status, answer, location = self._modify(parts[-2], params)
            else:
                status, answer, location = self._credit(parts[-2], params)
            if fault is not None:  # done, but the answer is lost on the way back
                return 503, None, ""
            return status, answer, location

    def _create(self, params: dict[str, Any]) -> Answer:
        item = (params.get("chargeItem") or {}).get("resource")
        problem = _check(item, modify=False)
        if problem:
            return problem
        self._new(item)
        return 200, None, ""

    def _modify(self, old_id: str, params: dict[str, Any]) -> Answer:
        old = self.items.get(old_id)
        if old is None:
            return 404, _outcome("not-found", f"ChargeItem/{old_id}"), ""
        item = (params.get("chargeItem") or {}).get("resource")
        problem = _check(item, modify=True)
        if problem:
            return problem
        replacing = next(e for e in item["extension"] if e["url"] == EXT + "replacing")
        version = next(
            (x.get("valueString") for x in replacing.get("extension", [])
             if x.get("url") == "item-version"), None,
        )  # fmt: skip
        if replacing["valueReference"]["reference"] != f"ChargeItem/{old_id}":
            return 422, _outcome("business-rule", "replacing does not name the item"), ""
        if version != old["meta"]["versionId"]:
            return 409, _outcome("conflict", "the item-version is not the current one"), ""
        old["status"] = "not-billable"
        old["meta"]["versionId"] = str(int(old["meta"]["versionId"]) + 1)
        item = {
            **item,
            "extension": [e for e in item["extension"] if e["url"] != EXT + "replacing"],
        }
        new = self._new(item)
        return 201, None, f"{self.base}/ChargeItem/{new}/_history/1"

    def _credit(self, old_id: str, params: dict[str, Any]) -> Answer:
        old = self.items.get(old_id)
        if old is None:
            return 404, _outcome("not-found", f"ChargeItem/{old_id}"), ""
        for name in ("versionId", "subject", "context"):
            if name not in params:
                return 500, _outcome("required", f"{name} is required"), ""
        if params["versionId"].get("valueString") != old["meta"]["versionId"]:
            return 409, _outcome("conflict", "the versionId is not the current one"), ""
        old["status"] = "not-billable"
        old["meta"]["versionId"] = str(int(old["meta"]["versionId"]) + 1)
        credit = self._new({**old, "quantity": {"value": -old["quantity"]["value"]}})
        self.items[credit]["status"] = "not-billable"
        return 201, None, f"{self.base}/ChargeItem/{credit}/_history/1"

    def _new(self, item: dict[str, Any]) -> str:
        self._next += 1
        rid = str(self._next)
        self.items[rid] = {
            **{k: v for k, v in item.items() if k not in ("id", "meta")},
            "id": rid,
            "meta": {"versionId": "1"},
            "status": "billable",
        }
        return rid

    # --- reads ------------------------------------------------------------------------------

    def search(self, kind: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._lock:
            if kind == "ChargeItem":
                context = query.get("context", [""])[0]
                found = [i for i in self.billable() if i["context"]["reference"].endswith(context)]
            else:  # the day's search: the day's resources with the encounter's ChargeItems
                found = [*self.record, *self.items.values()]
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in found]}  # fmt: skip


def _check(item: Any, modify: bool) -> Answer | None:
    if not isinstance(item, dict) or item.get("resourceType") != "ChargeItem":
        return 500, _outcome("required", "chargeItem is required"), ""
    for name in UNSUPPORTED:
        if name in item:
            return 422, _outcome("business-rule", f"{name} is not supported"), ""
    for ext in item.get("extension", []):
        if ext.get("url") not in KNOWN_EXTENSIONS or (
            ext["url"].endswith("replacing") and not modify
        ):
            return (
                422,
                _outcome("business-rule", f"extension {ext.get('url')} is not supported"),
                "",
            )
    if modify and not any(e["url"].endswith("replacing") for e in item.get("extension", [])):
        return 422, _outcome("business-rule", "replacing is required"), ""
    if item.get("status") != "unknown":
        return 422, _outcome("business-rule", "status must be unknown"), ""
    for name in ("subject", "context", "occurrenceDateTime", "quantity", "code"):
        if not item.get(name):
            return 500, _outcome("required", f"{name} is required"), ""
    codings = item["code"].get("coding", [])
    if len(codings) != 1:
        return 422, _outcome("business-rule", "code must have exactly one coding"), ""
    system = codings[0].get("system", "")
    if not any(system.endswith(f"/CodeSystem/BillCodes-{t}") for t in TIERS):
        return 422, _outcome("business-rule", "code is not from a bill-code system"), ""
    if not any(e.get("url") == EXT + "bill-code-schedule" for e in codings[0].get("extension", [])):
        return 422, _outcome("business-rule", "the coding has no bill-code-schedule"), ""
    for performer in item.get("performer", []):
        function = performer["function"]["coding"][0]["code"]
        if function not in ("OP", "PRF", "VRF"):
            return 422, _outcome("business-rule", f"performer function {function}"), ""
    return None


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]}  # fmt: skip


@contextmanager
def millennium(record: list[dict[str, Any]]) -> Iterator[FakeMillennium]:
    fake = FakeMillennium(free_port(), list(record))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path = url.path.removeprefix("/r4/tenant-1/")
            if path == "metadata":
                return self._json(200, {
                    "resourceType": "CapabilityStatement",
                    "rest": [{"resource": [
                        {"type": "Encounter", "searchParam": [{"name": "_id"}]},
                        {"type": "ChargeItem", "searchParam": [{"name": "context"}]},
                    ]}],
                })  # fmt: skip
            if path.startswith("ChargeItem/"):
                item = fake.items.get(path.split("/")[1])
                return self._json(200 if item else 404, item or _outcome("not-found", path))
            return self._json(200, fake.search(path, parse_qs(url.query)))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = urlsplit(self.path).path.removeprefix("/r4/tenant-1/")
            status, answer, location = fake.operate(path, body)
            self._json(status, answer, {"Location": location} if location else {})

        def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            content = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    server = ThreadingHTTPServer(("127.0.0.1", fake.port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        thread.join(5)
