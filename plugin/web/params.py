"""Query parameters the pages and the APIs read alike; a bad one is a 400 naming it (a JSON
body for the APIs, a page for the pages: plugin/web/errors.py)."""

from __future__ import annotations

from datetime import date

from flask import request

from plugin.errors import BadRequest


def date_arg(name: str) -> date | None:
    """?name=YYYY-MM-DD, or None when absent."""
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest(f"{name}: expected YYYY-MM-DD", [(name, value)]) from exc
