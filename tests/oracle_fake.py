"""The tests' Oracle Health Millennium: the product's stand-in (plugin/commands/
millennium_standin.py, a real HTTP server on 127.0.0.1 enforcing the published ChargeItem
contract) with the rest of the EHR played from a day's resources: its CapabilityStatement, and
one Encounter search answering `record` with the stand-in's ChargeItems (as the day's search
brings them with `_revinclude=ChargeItem:context`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from plugin.commands.millennium_standin import EXT, MillenniumStandIn
from tests.ehr import free_port

__all__ = ["EXT", "FakeMillennium", "millennium"]


class FakeMillennium:
    def __init__(self, record: list[dict[str, Any]]) -> None:
        self.record = record
        self.stand_in = MillenniumStandIn(free_port(), "/r4/tenant-1", self._rest)
        self.book = self.stand_in.book

    @property
    def base(self) -> str:
        return self.stand_in.base

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        return self.book.calls

    @property
    def transactions(self) -> list[str]:
        return self.book.transactions

    def billable(self) -> list[dict[str, Any]]:
        return self.book.billable()

    def fail_next(self, status: int, text: str) -> None:
        self.book.fail_next(status, text)

    def lose_next(self) -> None:
        self.book.lose_next()

    def _rest(
        self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if path == "metadata":
            answer: dict[str, Any] = {
                "resourceType": "CapabilityStatement",
                "rest": [
                    {
                        "resource": [
                            {"type": "Encounter", "searchParam": [{"name": "_id"}]},
                            {"type": "ChargeItem", "searchParam": [{"name": "context"}]},
                        ]
                    }
                ],
            }
        else:  # the day's search: the day's resources with the encounter's ChargeItems
            found = [*self.record, *self.book.items.values()]
            answer = {"resourceType": "Bundle", "entry": [{"resource": r} for r in found]}
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(answer).encode()


@contextmanager
def millennium(record: list[dict[str, Any]]) -> Iterator[FakeMillennium]:
    fake = FakeMillennium(list(record))
    fake.stand_in.start()
    try:
        yield fake
    finally:
        fake.stand_in.stop()
