"""Errors of the command line and the service that map to an exit status or an HTTP answer."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input for a command: exit status 2 with this one-line message."""


class VisitTooLarge(Exception):
    """A visit with more procedures than THERACHARGE_MAX_PROCEDURES: refused whole, never
    decided in part (HTTP 422; a batch records it as that encounter's failure)."""

    def __init__(self, encounter: str, count: int, limit: int) -> None:
        super().__init__(
            f"{count} procedures; at most {limit} are decided for one visit "
            "(THERACHARGE_MAX_PROCEDURES)"
        )
        self.encounter = encounter
