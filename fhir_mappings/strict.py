"""Optional strict mode: validate a resource against the R4B model (R4 wire shape).

About 0.6 ms a resource (docs/performance.md), so it is off on the hot path and on for
admin uploads, contract tests and `theracharge process --strict`. The models do not check code
values: statuses and code systems are checked by our own code.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError


def validation_error(resource: dict[str, Any]) -> str | None:
    """None when the resource is valid R4; else a short message naming the first bad elements."""
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not kind.isalpha():
        return "no resourceType"
    try:
        module = importlib.import_module(f"fhir.resources.R4B.{kind.lower()}")
    except ModuleNotFoundError:
        return f"unknown resourceType {kind!r}"
    model = getattr(module, kind, None)
    if model is None:
        return f"unknown resourceType {kind!r}"
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors()
        parts = [
            f"{'.'.join(str(p) for p in e['loc'] if p != '__root__') or kind}: {e['msg']}"
            for e in errors[:3]
        ]
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        return "; ".join(parts) + more
    return None
