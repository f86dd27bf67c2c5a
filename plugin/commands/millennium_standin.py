"""The demo's Oracle Health Millennium for `theracharge demo --outlet oracle-health`: its
ChargeItem API in front of the sandbox EHR, enforcing the contract Oracle publishes (Oracle
Health Millennium Platform APIs: "ChargeItem", "Create a charge item", "Create a modified charge
item", "Credit a charge item"; plugin/outlets/oracle.py):
- `$create`: a Parameters of `transactionId` and one `chargeItem` with status `unknown`,
  subject, context, occurrence, quantity and one `code` coding from a bill-code system with
  its schedule extension; a field it does not support (identifier, priceOverride, enterer,
  account, supportingInformation, bodysite) or an extension it does not know is 422; a missing
  required field 500 `required`. It answers 200 with no body and no id.
- `$modify` needs the `replacing` extension naming the item and its current `item-version`
  (409 otherwise); `$credit` its current `versionId` (409 otherwise). Both answer 201 with the
  new item's Location.
- `ChargeItem?context=…&-status=billable` lists the encounter's billable items.
Every other request goes to `rest` (the demo: the sandbox EHR behind it; the tests: a day's
resources). `fail_next(status, text)` answers the next operation with an error; `lose_next()`
does it and answers 503, as a gateway that lost the answer would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# (method, path after the base, query, body, headers) → (status, headers, content)
Rest = Callable[[str, str, str, bytes, dict[str, str]], tuple[int, dict[str, str], bytes]]

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
class ChargeItemBook:
    """Millennium's ChargeItems as the stand-in keeps them, and the operations on them."""

    base: str
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (path, body)
    transactions: list[str] = field(default_factory=list)
    _faults: list[tuple[int, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 1000

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
        assert isinstance(item, dict)  # _check said so
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
        assert isinstance(item, dict)  # _check said so
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

    def search(self, context: str) -> dict[str, Any]:
        """`ChargeItem?context=…&-status=billable`: the encounter's billable items."""
        with self._lock:
            found = [i for i in self.billable() if i["context"]["reference"].endswith(context)]
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in found]}  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """What Millennium holds: billable items and units by code and modifiers, and the
        operations taken."""
        with self._lock:
            units: dict[str, int] = {}
            for item in self.billable():
                code = item["code"]["coding"][0]["code"]
                mods = [
                    s["valueCoding"]["code"]
                    for e in item.get("extension", [])
                    if e["url"] == EXT + "modifier-code"
                    for s in e["extension"]
                    if s["url"] == "code"
                ]
                key = "-".join([code, *mods])
                units[key] = units.get(key, 0) + item["quantity"]["value"]
            operations: dict[str, int] = {}
            for path, _ in self.calls:
                name = path.rsplit("/", 1)[-1]
                operations[name] = operations.get(name, 0) + 1
            return {
                "billable_items": len(self.billable()),
                "units_by_code": dict(sorted(units.items())),
                "operations": operations,
            }


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


class MillenniumStandIn:
    """The stand-in's HTTP server on 127.0.0.1: ChargeItem operations and reads from the book,
    everything else from `rest`."""

    def __init__(self, port: int, prefix: str, rest: Rest) -> None:
        self.port, self.prefix, self.rest = port, prefix.rstrip("/"), rest
        self.book = ChargeItemBook(f"http://127.0.0.1:{port}{self.prefix}")
        self._server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        return self.book.base

    def start(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def do_PUT(self) -> None:
                self._handle()

            def do_DELETE(self) -> None:
                self._handle()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                path = url.path.removeprefix(stand_in.prefix).lstrip("/")
                book = stand_in.book
                if self.command == "POST" and path.startswith("ChargeItem/") and "$" in path:
                    status, answer, location = book.operate(path, json.loads(body or b"{}"))
                    headers = {"Location": location} if location else {}
                    return self._reply(status, answer, headers)
                if self.command == "GET" and path == "ChargeItem":
                    context = parse_qs(url.query).get("context", [""])[0]
                    return self._reply(200, book.search(context), {})
                if self.command == "GET" and path.startswith("ChargeItem/"):
                    item = book.items.get(path.split("/")[1])
                    return self._reply(
                        200 if item else 404, item or _outcome("not-found", path), {}
                    )
                headers = {k: v for k, v in self.headers.items()}
                status, extra, content = stand_in.rest(self.command, path, url.query, body, headers)
                self._raw(status, extra, content)

            def _reply(self, status: int, answer: Any, headers: dict[str, str]) -> None:
                content = json.dumps(answer).encode() if answer is not None else b""
                self._raw(status, {"Content-Type": "application/fhir+json", **headers}, content)

            def _raw(self, status: int, headers: dict[str, str], content: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()


def proxy_to(upstream: str) -> Rest:
    """`rest` for the demo: every other request sent on to the sandbox EHR as it came."""
    import requests

    # hop-by-hop headers stay here; Host goes on, so the EHR sees the base it advertises (a
    # SMART client assertion names that token URL as its audience)
    hop = {"connection", "keep-alive", "transfer-encoding", "content-length",
           "content-encoding"}  # fmt: skip

    def forward(
        method: str, path: str, query: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        url = f"{upstream.rstrip('/')}/{path}" + (f"?{query}" if query else "")
        sent = {k: v for k, v in headers.items() if k.lower() not in hop}
        answer = requests.request(
            method, url, data=body or None, headers=sent, timeout=60, allow_redirects=False
        )
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in hop}
        return answer.status_code, kept, answer.content

    return forward
