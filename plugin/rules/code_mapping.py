"""From a procedure's codings to one CPT/HCPCS code: direct codes first, then admin mappings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from plugin.rules.model import Catalog
from plugin.rules.records import Record


@dataclass(frozen=True, slots=True)
class MappedCode:
    """One admin mapping entry: a source code's CPT/HCPCS target and where the mapping is from."""

    target: str
    table: str  # the ConceptMap url (or file) it came from
    equivalence: str
    comment: str


@dataclass(frozen=True, slots=True)
class CodeMap:
    """All admin mapping tables merged: (source system, code) → target. Procedures map to the
    catalog's CPT/HCPCS codes (`entries`); diagnoses in another system (SNOMED CT) to
    ICD-10-CM (`diagnoses`: the groups whose target is ICD-10-CM)."""

    entries: Mapping[tuple[str, str], MappedCode]
    diagnoses: Mapping[tuple[str, str], MappedCode] = field(default_factory=dict)


class Resolution(Record, frozen=True, gc=False):
    """The code a procedure bills under, how it was found, and any conflict."""

    code: str | None
    how: str  # "direct", "mapped", "unmapped", "conflict"
    detail: str


def resolve_code(
    codings: Sequence[tuple[str, str]], catalog: Catalog, code_map: CodeMap
) -> Resolution:
    """Pick the CPT/HCPCS code of a procedure from its codings.

    A CPT or HCPCS coding that is in the catalog wins; otherwise the admin mappings are used.
    Two codings that lead to different codes are a conflict, never a silent choice.
    """
    direct = {code for system, code in codings if _is_catalog_coding(system, code, catalog)}
    if len(direct) == 1:
        code = next(iter(direct))
        return Resolution(code, "direct", f"coded directly as {code}")
    if len(direct) > 1:
        return Resolution(None, "conflict", f"coded directly as {', '.join(sorted(direct))}")
    mapped = {
        code_map.entries[(s, c)].target: (s, c) for s, c in codings if (s, c) in code_map.entries
    }
    if len(mapped) == 1:
        target, (system, code) = next(iter(mapped.items()))
        table = code_map.entries[(system, code)].table
        return Resolution(target, "mapped", f"{system}|{code} maps to {target} ({table})")
    if len(mapped) > 1:
        parts = ", ".join(f"{s}|{c} → {t}" for t, (s, c) in sorted(mapped.items()))
        return Resolution(None, "conflict", f"codings map to different codes: {parts}")
    listed = ", ".join(f"{s}|{c}" for s, c in codings) or "no coding"
    return Resolution(None, "unmapped", f"no CPT/HCPCS code or mapping for {listed}")


def _is_catalog_coding(system: str, code: str, catalog: Catalog) -> bool:
    definition = catalog.codes.get(code)
    return definition is not None and definition.system == system
