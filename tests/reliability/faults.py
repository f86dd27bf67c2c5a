"""A fault-injecting HTTP proxy in front of the sandbox EHR, on 127.0.0.1.

Each request is forwarded to the EHR unchanged, unless a fault rule matches it: then it gets an
error status, a 429 with Retry-After, no answer (a timeout), a connection reset, a truncated
body, or — the hard case for idempotency — it is forwarded (the EHR applies it) and the caller
still sees a failure. The EHR advertises the proxy's URL as its base, so its links lead back
here. Rules are set by the test; `hits` records what happened to each request.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "upgrade",
    "proxy-connection",
}
# What a fault does: answer with a status without forwarding (`status`, with Retry-After for
# 429), say nothing for `seconds` then close (`timeout`), reset the connection before (`reset`)
# or after forwarding (`reset-after`), forward and send half the body (`truncate`), forward and
# answer a 502 as a gateway that lost the answer would (`lost-answer`), answer 200 with a body
# that is not JSON (`garbage`), or forward after `seconds` of delay (`slow`).
KINDS = ("status", "timeout", "reset", "reset-after", "truncate", "lost-answer", "garbage", "slow")


@dataclass
class Fault:
    method: str
    path: str  # a regular expression searched in the path and query
    kind: str
    times: int = 1  # how many matching requests get it (then they pass)
    status: int = 503
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}")


@dataclass
class FaultProxy:
    upstream: str  # e.g. http://127.0.0.1:18090
    port: int
    faults: list[Fault] = field(default_factory=list)
    hits: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, what
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, method: str, path: str, kind: str, **options: float) -> Fault:
        fault = Fault(method, path, kind, **options)  # type: ignore[arg-type]
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.hits.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and re.search(fault.path, path):
                    fault.times -= 1
                    self.hits.append((method, path, fault.kind))
                    return fault
            self.hits.append((method, path, "passed"))
            return None

    def faulted(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return [h for h in self.hits if h[2] != "passed"]

    def start(self) -> ThreadingHTTPServer:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:  # quiet
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
                fault = proxy.take(self.command, self.path)
                kind = fault.kind if fault else None
                if fault and kind == "status":
                    extra = {"Retry-After": str(int(fault.seconds))} if fault.status == 429 else {}
                    return self._reply(fault.status, b'{"resourceType":"OperationOutcome"}', extra)
                if fault and kind == "timeout":
                    time.sleep(fault.seconds)
                    return self._reset()
                if kind == "reset":
                    return self._reset()
                if fault and kind == "slow":
                    time.sleep(fault.seconds)
                if kind == "garbage":
                    return self._reply(200, b"<html>502 Bad Gateway</html>", {})
                answer = self._forward(body)
                if kind == "reset-after":
                    return self._reset()
                if kind == "lost-answer":
                    return self._reply(502, b"", {})
                content = answer.content
                if kind == "truncate":
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers.get("Content-Type", ""))
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content[: len(content) // 2])
                    self.wfile.flush()
                    return self._reset()
                headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                return self._reply(answer.status_code, content, headers)

            def _forward(self, body: bytes) -> requests.Response:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers.pop("Host", None)
                return requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    data=body or None,
                    headers=headers,
                    timeout=120,
                    allow_redirects=False,
                )

            def _reply(self, status: int, content: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _reset(self) -> None:
                """A TCP reset: linger 0, then close."""
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server
