"""A time budget for the work of one request: every wait on the EHR or on a billing day's lock
inside it ends by the deadline.

A CDS client gives up on a hook after a few seconds, and gunicorn kills a worker whose request
runs past its timeout (an HTML 500, the worker lost). A slow EHR must therefore end a request's
wait, not the worker: the web layer opens a budget per request (THERACHARGE_HOOK_BUDGET_SECONDS
for a hook call, THERACHARGE_REQUEST_BUDGET_SECONDS for any other), the EHR client sizes each
request's timeouts and retries to what is left of it, the day lock waits no longer, and what
runs out raises OutOfTime: the hook then answers with what the prefetch tells (and queues the
day), the APIs with 504 and Retry-After. Background work (notifications, backfills, the command
line) opens no budget and waits as long as its own limits allow.

A context variable, so each thread (and each request in it) has its own deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from plugin.errors import TheraChargeError

_DEADLINE: ContextVar[float | None] = ContextVar("theracharge_deadline", default=None)
RETRY_AFTER_SECONDS = 30  # what a 504 asks the caller to wait before trying again


class OutOfTime(TheraChargeError):
    """The request's time budget ran out while it waited on the EHR or a billing day's lock
    (HTTP 504, with Retry-After): nothing half-written — a write that may have reached the EHR
    is idempotent, and the next run converges."""

    http_status, code = 504, "ehr-too-slow"


@contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    """Work inside ends by `seconds` from now (None: no budget of its own); a budget inside
    another never outlasts the outer one."""
    if seconds is None:
        yield
        return
    deadline = time.monotonic() + seconds
    outer = _DEADLINE.get()
    token = _DEADLINE.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def open_budget(seconds: float) -> object:
    """A budget for the rest of this context (a Flask request: opened before it, closed by
    `close_budget` with what this returns)."""
    return _DEADLINE.set(time.monotonic() + seconds)


def close_budget(token: object) -> None:
    _DEADLINE.reset(token)  # type: ignore[arg-type]


def remaining() -> float | None:
    """Seconds left of the budget (≤ 0 when spent); None when there is none."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def spent() -> bool:
    """The budget is spent (a timeout now is the budget's, not the other side's)."""
    left = remaining()
    return left is not None and left <= 0.001


def check(what: str) -> float | None:
    """What is left, or OutOfTime naming `what` was to be waited for when nothing is."""
    left = remaining()
    if left is not None and left <= 0:
        raise OutOfTime(f"the request's time budget ran out before {what}")
    return left
