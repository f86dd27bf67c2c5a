"""Unit results as the `theracharge units` JSON contract and as a readable text table."""

from __future__ import annotations

from typing import Any

from plugin.rules.model import GroupKey, GroupUnits, Method, UnitsResult

METHOD_TITLES = {
    Method.CMS: "Medicare 8-minute rule on total timed minutes (CMS Pub 100-04 ch.5 §20.2 C)",
    Method.AMA: "AMA per-code rule, nothing pooled (CPT time rule)",
}


def _key_fields(key: GroupKey) -> dict[str, str]:
    fields = {"discipline": key.discipline.value}
    for name in ("date", "patient", "provider"):
        value = getattr(key, name)
        if value is not None:
            fields[name] = value
    return fields


def _line_dicts(group: GroupUnits) -> list[dict[str, Any]]:
    lines = []
    for line in group.lines:
        entry: dict[str, Any] = {
            "code": line.code,
            "minutes": line.minutes,
            "kind": line.kind.value,
            "units": line.units,
            **_key_fields(group.key),
        }
        if line.derived_from:
            entry["derived_from"] = line.derived_from
        lines.append(entry)
    return lines


def units_json(result: UnitsResult) -> dict[str, Any]:
    """The documented output of `theracharge units` (README, "The units contract")."""
    return {
        "method": result.method.value,
        "total_timed_minutes": result.total_timed_minutes,
        "total_treatment_minutes": result.total_treatment_minutes,
        "total_timed_units": result.total_timed_units,
        "lines": [line for group in result.groups for line in _line_dicts(group)],
        "groups": [
            {
                **_key_fields(g.key),
                "total_timed_minutes": g.total_timed_minutes,
                "total_treatment_minutes": g.total_treatment_minutes,
                "total_timed_units": g.total_timed_units,
            }
            for g in result.groups
        ],
        "alternatives": [
            {**_key_fields(g.key), "units": dict(alt)}
            for g in result.groups
            for alt in g.alternatives
        ],
        "explanation": [
            {"text": e.text, "source": e.source} for g in result.groups for e in g.explanation
        ],
    }


def units_text(result: UnitsResult) -> str:
    """The same result as a table a biller can read."""
    out = [f"Method: {METHOD_TITLES[result.method]}"]
    for group in result.groups:
        where = ", ".join(f"{k} {v}" for k, v in _key_fields(group.key).items())
        out.append("")
        out.append(f"{where}")
        out.append(f"  {'code':<7}{'kind':<17}{'minutes':>8}{'units':>7}")
        for line in group.lines:
            note = f"  (add-on of {line.derived_from})" if line.derived_from else ""
            out.append(
                f"  {line.code:<7}{line.kind.value:<17}{line.minutes:>8}{line.units:>7}{note}"
            )
        out.append(
            f"  total timed minutes {group.total_timed_minutes} → "
            f"{group.total_timed_units} timed units; "
            f"total treatment time {group.total_treatment_minutes} minutes"
        )
        for alt in group.alternatives:
            choice = ", ".join(f"{code} ×{units}" for code, units in alt.items())
            out.append(f"  equally valid: {choice}")
        out.append("  why:")
        out.extend(f"   - {e.text} [{e.source}]" for e in group.explanation)
    return "\n".join(out) + "\n"
