"""MLLP (HL7 v2 Minimal Lower Layer Protocol): our connection to a billing system's listener,
and our own listener for the events an interface engine sends.

The connection to a billing system's HL7 v2 listener: each message framed
`0x0B … 0x1C 0x0D` (HL7 v2 Minimal Lower Layer Protocol, Release 2), one at a time on one
kept-open connection, each answered by its ACK before the next is sent.

The socket and the framing are python-hl7's `MLLPClient`; what it leaves to us is waiting for
the whole ACK within a time limit (its `send` takes one `recv`, unbounded) and connecting with
a timeout. A message that got no ACK is sent again by the caller on a new connection with the
same control id (MSH-10), which the receiver echoes in MSA-2 and uses to recognise a repeat
(HL7 v2.5.1 Ch. 2, MSH-10 and MSA-2; MLLP Release 2 leaves duplicates to the application).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from hl7.client import CR, EB, SB, MLLPClient
from hl7.mllp import start_hl7_server

from plugin.deadline import check
from plugin.errors import UpstreamError

log = logging.getLogger(__name__)

MAX_ACK_BYTES = 1024 * 1024  # an ACK is a few hundred bytes; a megabyte is no ACK


class NoAck(UpstreamError):
    """The billing system did not answer with an ACK: the connection failed or dropped, or the
    ACK did not come within the time limit. Whether it took the message is unknown: send it
    again with the same control id."""


class _Client(MLLPClient):  # type: ignore[misc]
    """python-hl7's client, connected with a timeout and reading a whole framed ACK."""

    def __init__(self, host: str, port: int, timeout: float, encoding: str) -> None:
        # MLLPClient.__init__ connects with no timeout: a billing system that does not answer
        # the connection would hold the run forever
        self.socket = socket.create_connection((host, port), timeout=timeout)
        self.encoding = encoding

    def send(self, data: bytes) -> bytes:
        self.socket.sendall(data)
        answer = b""
        while not answer.rstrip(CR).endswith(EB):
            chunk = self.socket.recv(65536)
            if not chunk:
                raise ConnectionError("the billing system closed the connection before its ACK")
            answer += chunk
            if len(answer) > MAX_ACK_BYTES:
                raise ConnectionError("the billing system's answer is too long for an ACK")
        return answer


class MllpSender:
    """One kept-open connection to the billing system's listener; messages one at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        ack_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        encoding: str = "utf-8",
    ) -> None:
        self.host, self.port = host, port
        self.ack_timeout, self.connect_timeout = ack_timeout, connect_timeout
        self.encoding = encoding
        self._client: _Client | None = None
        self._lock = threading.Lock()
        self.sent = 0  # messages written to a connection (tests count them)

    def send(self, message: str) -> str:
        """Send one message and return its ACK (the text between the frame's bytes); NoAck
        when none came. The connection is dropped on any failure, so the next message (or the
        same one again) goes on a new one."""
        with self._lock:
            try:
                if self._client is None:
                    left = check("connecting to the billing system")
                    wait = self.connect_timeout if left is None else min(self.connect_timeout, left)
                    self._client = _Client(self.host, self.port, wait, self.encoding)
                # within the request's time budget (a hook call's), as every EHR request is
                left = check("the billing system's ACK")
                wait = self.ack_timeout if left is None else min(self.ack_timeout, left)
                self._client.socket.settimeout(wait)
                self.sent += 1
                framed = self._client.send(SB + message.encode(self.encoding) + EB + CR)
            except (OSError, ConnectionError) as exc:
                self._drop()
                raise NoAck(
                    f"no ACK from the billing system at {self.host}:{self.port}: "
                    f"{type(exc).__name__}"
                ) from exc
            return framed.strip(SB + EB + CR + b"\n").decode(self.encoding, "replace")

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
            self._client = None


class MllpListener:
    """Events in over MLLP: python-hl7's asyncio server (`start_hl7_server`) on host:port, in a
    thread of its own. Each message's text goes to `handler` (in a worker thread: it may read
    the EHR and the database) and its answer — an ACK — goes back on the same connection; a
    connection carries any number of messages, one at a time. `peers`: the only addresses
    allowed to connect (empty: any)."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: Callable[[str], str],
        peers: tuple[str, ...] = (),
        encoding: str = "utf-8",
    ) -> None:
        self.host, self.port, self.handler = host, port, handler
        self.peers, self.encoding = peers, encoding
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None  # asyncio.Server
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listening when this returns (OSError when the address cannot be bound)."""
        started = threading.Event()
        failure: list[BaseException] = []
        loop = self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    start_hl7_server(self._client, self.host, self.port, encoding=self.encoding)
                )
                sockets = self._server.sockets
                self.port = int(sockets[0].getsockname()[1]) if sockets else self.port
            except BaseException as exc:  # noqa: BLE001 -- handed to start()'s caller
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="hl7-listener", daemon=True)
        self._thread.start()
        started.wait(30)
        if failure:
            raise failure[0]
        log.info("listening for HL7 v2 events on %s:%d", self.host, self.port)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _client(self, reader: Any, writer: Any) -> None:
        peer = writer.get_extra_info("peername")
        if self.peers and (not peer or peer[0] not in self.peers):
            log.warning("an HL7 connection from an address not allowed was closed")
            writer.close()
            return
        loop = asyncio.get_running_loop()
        try:
            while not writer.is_closing():
                # the frame's bytes, not python-hl7's parse of them: a message that does not
                # parse is the handler's to answer (AR), not the end of the connection
                block = await reader.readblock()
                text = block.decode(self.encoding, "replace")
                answer = await loop.run_in_executor(None, self.handler, text)
                writer.writeblock(answer.encode(self.encoding))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # one bad connection never stops the listener; no message logged
            log.exception("an HL7 connection failed")
        finally:
            writer.close()
