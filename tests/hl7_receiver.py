"""A billing system's HL7 v2 listener for the tests: an asyncio MLLP server on 127.0.0.1 built
on python-hl7 (`start_hl7_server`), in a thread of its own.

It posts each DFT^P03's FT1 segments and answers AA, unless told otherwise for the next
messages: `AE`/`AR` with words (nothing posted), `drop` (post, then close the connection
without an ACK: the ACK lost on the way back), `slow` (post, then wait before the ACK). Like a
real receiver it recognises a control id it has already posted (MSH-10) and answers AA without
posting it twice. `posted` is what a billing clerk would see: one entry per FT1 accepted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import hl7
from hl7.mllp import start_hl7_server

from tests.ehr import free_port


@dataclass
class Ft1:
    control_id: str
    key: str  # FT1-2
    kind: str  # FT1-6
    code: str  # FT1-7.1
    units: int  # FT1-10
    modifiers: str  # FT1-26 as sent


@dataclass
class Receiver:
    port: int
    posted: list[Ft1] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # every message received, repeats too
    plan: list[tuple[str, Any]] = field(default_factory=list)  # what to do with the next ones
    connections: int = 0
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, *behaviours: tuple[str, Any]) -> None:
        """What to do with the next messages, in order: ("AE", words), ("AR", words),
        ("drop", None), ("slow", seconds). Then AA again."""
        with self._lock:
            self.plan.extend(behaviours)

    def balance(self) -> dict[str, int]:
        """Units per line key, charges less credits (CD, or CG with negative units)."""
        total: dict[str, int] = {}
        for ft1 in self.posted:
            sign = -1 if ft1.kind == "CD" else 1
            total[ft1.key] = total.get(ft1.key, 0) + sign * ft1.units
        return {k: v for k, v in total.items() if v}

    async def _client(self, reader: Any, writer: Any) -> None:
        self.connections += 1
        try:
            while not writer.is_closing():
                received = await reader.readmessage()
                text = str(received)
                with self._lock:
                    self.messages.append(text)
                    behaviour, value = self.plan.pop(0) if self.plan else ("AA", None)
                control_id = str(received.segment("MSH")[10])
                if behaviour in ("AE", "AR"):
                    ack = _ack(received, behaviour, str(value))
                else:
                    self._post(received, control_id)
                    if behaviour == "drop":
                        writer.close()
                        return
                    if behaviour == "slow":
                        await asyncio.sleep(float(value))
                    ack = _ack(received, "AA", "")
                writer.writemessage(ack)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _post(self, message: Any, control_id: str) -> None:
        with self._lock:
            if control_id in self._seen:
                return  # a repeat: posted once already
            self._seen.add(control_id)
            for segment in message:
                if str(segment[0]) != "FT1":
                    continue
                self.posted.append(
                    Ft1(
                        control_id,
                        str(segment[2]),
                        str(segment[6]),
                        str(segment[7][0][0]) if len(segment) > 7 else "",
                        int(str(segment[10])),
                        str(segment[26]) if len(segment) > 26 else "",
                    )
                )


def _ack(message: Any, code: str, words: str) -> Any:
    msh = message.segment("MSH")
    control = str(msh[10])
    version = str(msh[12])
    header = "MSH|^~\\&|BILLING|HOSPITAL|THERACHARGE|THERAPY|20261102120000||ACK^P03"
    header += f"|A{control}|P|{version}"
    text = f"{header}\rMSA|{code}|{control}|{words}"
    if code != "AA":
        text += f"\rERR|^^^207&Application internal error&HL70357|||||||{words}"
    return hl7.parse(text)


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver(free_port())
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def serve() -> None:
            holder["server"] = await start_hl7_server(receiver._client, "127.0.0.1", receiver.port)
            started.set()

        loop.run_until_complete(serve())
        loop.run_forever()
        # stopped: the connections' tasks cancelled and finished, then the loop closed
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(holder["server"].wait_closed())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield receiver
    finally:

        def stop() -> None:
            holder["server"].close()
            loop.stop()

        loop.call_soon_threadsafe(stop)
        thread.join(5)
