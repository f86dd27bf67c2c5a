"""`Json`: a FHIR resource or any JSON object as Python reads it (plain dicts on the hot paths,
docs/performance.md)."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]
