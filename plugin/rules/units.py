"""Billable units from documented minutes: the Medicare 8-minute rule and the AMA per-code rule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from itertools import combinations

from plugin.rules import unit_notes
from plugin.rules.families import Family, gather
from plugin.rules.model import (
    Catalog,
    CodeKind,
    Explanation,
    GroupKey,
    GroupUnits,
    Method,
    Service,
    TieBreak,
    UnitLine,
    UnitsResult,
)
from plugin.rules.parameters import UnitParameters, UnitTable


def units_for_minutes(minutes: int, table: UnitTable) -> int:
    """Units for timed minutes by the 15-minute table: 0–7 → 0, 8–22 → 1, 23–37 → 2, …

    The pattern continues past the printed rows (each further 15 minutes is one more unit).
    Source: CMS Pub 100-04 ch.5 §20.2 C.
    """
    if minutes < table.first_unit_minutes:
        return 0
    return (minutes - table.first_unit_minutes) // table.unit_minutes + 1


def increment_units(minutes: int, increment: int) -> int:
    """Units of `increment` minutes each, a unit being reached once its midpoint is passed.

    For 15 minutes this is the same table as the 8-minute rule; for an hour, 31 minutes.
    Source: CPT time rule.
    """
    reached_at = increment // 2 + 1
    if minutes < reached_at:
        return 0
    return (minutes - reached_at) // increment + 1


def decide_units(
    services: Iterable[Service],
    catalog: Catalog,
    parameters: UnitParameters,
    *,
    on: date,
    method: Method = Method.CMS,
    tie_break: Sequence[TieBreak] | None = None,
) -> UnitsResult:
    """Group the services, then count each group's units under `method`.

    Minutes are totalled per patient, date of service, discipline and billing provider
    (CMS Pub 100-04 ch.5 §20.2 C, D; Pub 100-02 ch.15 §220.1.2). Every service's code must be
    in the catalog. `on` (the date of service) picks the dated rule values in force: a
    decision never depends on the day it is made.
    """
    table = parameters.unit_table.at(on).value
    order = tuple(tie_break) if tie_break else parameters.tie_break
    groups = gather(services, catalog)
    several = len(groups) > 1
    return UnitsResult(
        method,
        tuple(
            _decide_group(key, families, table, method, order, parameters, several)
            for key, families in groups.items()
        ),
    )


def _decide_group(
    key: GroupKey,
    families: list[Family],
    table: UnitTable,
    method: Method,
    order: tuple[TieBreak, ...],
    parameters: UnitParameters,
    several_groups: bool,
) -> GroupUnits:
    notes: list[Explanation] = [unit_notes.group_note(key)] if several_groups else []
    for family in families:
        notes.extend(unit_notes.minutes_notes(family))
    pool = [f for f in families if f.head.kind is CodeKind.TIMED_15]
    timed_minutes = sum(f.minutes for f in pool)
    alternatives: list[dict[str, int]] = []
    if method is Method.CMS:
        units, alternatives = _cms_pool(
            pool, timed_minutes, table, order, notes, parameters.max_alternatives
        )
    else:
        units = _ama_pool(pool, table, notes)
    treatment = timed_minutes + _units_outside_pool(families, units, notes)
    lines = [line for f in families for line in _family_lines(f, units[f.code], notes)]
    return GroupUnits(
        key=key,
        method=method,
        total_timed_minutes=timed_minutes,
        total_treatment_minutes=treatment,
        total_timed_units=sum(units[f.code] for f in pool),
        lines=tuple(lines),
        alternatives=tuple(_line_assignment(families, {**units, **alt}) for alt in alternatives),
        explanation=tuple(notes),
    )


def _units_outside_pool(
    families: list[Family], units: dict[str, int], notes: list[Explanation]
) -> int:
    """Units of untimed and other-increment codes; returns their minutes for treatment time.

    Untimed codes bill 1 unit a day whatever the time and their minutes count in total treatment
    time only (CMS Pub 100-04 ch.5 §20.2 B; Pub 100-02 ch.15 §220.3 E).
    """
    minutes = 0
    timed = 0
    for family in families:
        if family.head.kind is CodeKind.UNTIMED:
            units[family.code] = 1
            notes.append(unit_notes.untimed_note(family))
        elif family.head.kind is CodeKind.TIMED_INCREMENT:
            units[family.code] = _increment_family_units(family)
            notes.append(unit_notes.increment_note(family, units[family.code]))
        else:
            timed += family.minutes
            continue
        minutes += family.minutes
    if minutes:
        notes.append(unit_notes.treatment_note(minutes + timed))
    return minutes


def _cms_pool(
    pool: list[Family],
    timed_minutes: int,
    table: UnitTable,
    order: tuple[TieBreak, ...],
    notes: list[Explanation],
    max_alternatives: int,
) -> tuple[dict[str, int], list[dict[str, int]]]:
    """Share the units of the total timed minutes out among the timed codes.

    Each code first gets its whole 15-minute units; the units left over go to the codes with
    the most leftover minutes. Source: CMS Pub 100-04 ch.5 §20.2 C (Examples 1–5).
    """
    units: dict[str, int] = {}
    if not pool:
        return units, []
    total_units = units_for_minutes(timed_minutes, table)
    notes.append(unit_notes.total_note(pool, timed_minutes, total_units, table))
    step = table.unit_minutes
    for family in pool:
        units[family.code] = family.minutes // step
    remaining = total_units - sum(units.values())
    if any(units.values()):
        notes.append(unit_notes.whole_units_note(pool, step))
    if remaining <= 0:
        return units, []
    winners, tied, tied_winners = _largest_leftovers(pool, remaining, step, order)
    for family in winners:
        units[family.code] += 1
    notes.append(unit_notes.remaining_note(remaining, winners, step))
    if len(tied) == len(tied_winners):
        return units, []
    alternatives = _tie_alternatives(tied, tied_winners, step, max_alternatives)
    cutoff = tied[0].minutes % step
    notes.append(unit_notes.tie_note(tied, tied_winners, cutoff, order, len(alternatives)))
    return units, alternatives


def _largest_leftovers(
    pool: list[Family], remaining: int, step: int, order: tuple[TieBreak, ...]
) -> tuple[list[Family], list[Family], list[Family]]:
    """The `remaining` codes with the most leftover minutes, and the tie at the cut if any.

    There are always at least `remaining` codes with leftover minutes: the units left after
    whole blocks are floor((leftovers + 7) / 15), and each leftover is at most 14 minutes.
    """
    ranked = sorted((f for f in pool if f.minutes % step), key=lambda f: -(f.minutes % step))
    cutoff = ranked[remaining - 1].minutes % step
    above = [f for f in ranked if f.minutes % step > cutoff]
    tied = [f for f in ranked if f.minutes % step == cutoff]
    if len(tied) > 1:
        tied.sort(key=lambda f: _tie_key(f, order))
    tied_winners = tied[: remaining - len(above)]
    return above + tied_winners, tied, tied_winners


def _tie_key(family: Family, order: tuple[TieBreak, ...]) -> tuple[object, ...]:
    """Sort key of the tie-break rules in order; input order settles anything left."""
    keys: list[object] = []
    for rule in order:
        if rule is TieBreak.MOST_MINUTES:
            keys.append(-family.minutes)
        elif rule is TieBreak.INPUT_ORDER:
            keys.append(family.order)
        else:
            keys.append(family.code)
    keys.append(family.order)
    return tuple(keys)


def _tie_alternatives(
    tied: list[Family], chosen: list[Family], step: int, limit: int
) -> list[dict[str, int]]:
    """Every other way to give the same number of extra units to the tied codes (up to limit)."""
    picked = {f.code for f in chosen}
    alternatives: list[dict[str, int]] = []
    for combo in combinations(tied, len(chosen)):
        codes = {f.code for f in combo}
        if codes == picked:
            continue
        if len(alternatives) >= limit:
            break
        alternatives.append({f.code: f.minutes // step + (f.code in codes) for f in tied})
    return alternatives


def _ama_pool(pool: list[Family], table: UnitTable, notes: list[Explanation]) -> dict[str, int]:
    """Each timed code by its own minutes on the same table; leftovers are never pooled.

    Source: CPT time rule as payers apply it per code.
    """
    units = {f.code: units_for_minutes(f.minutes, table) for f in pool}
    if pool:
        notes.append(unit_notes.ama_note(pool, units, table))
    return units


def _increment_family_units(family: Family) -> int:
    """Units of a code with a first increment other than 15 minutes, add-ons included.

    The first unit is reached past the midpoint of the first increment, each add-on unit past
    the midpoint of its own increment. Source: CPT time rule and the codes' descriptors.
    """
    head = family.head
    first = increment_units(min(family.minutes, head.first_minutes), head.first_minutes)
    rest = max(0, family.minutes - head.first_minutes)
    return first + increment_units(rest, head.addon_minutes)


def _family_lines(family: Family, units: int, notes: list[Explanation]) -> list[UnitLine]:
    """One line per code: a primary with an add-on splits into the first unit and the rest."""
    head = family.head
    if head.addon is None:
        return [UnitLine(head.code, head.kind, family.minutes, units)]
    first_units = min(units, 1)
    addon_units = units - first_units
    addon_line = bool(addon_units) or head.addon in family.documented
    head_line = bool(first_units) or head.code in family.documented or not addon_line
    # Each line shows the minutes that produced its units, and together they show every
    # documented minute: without an add-on line the primary carries them all.
    first_minutes = min(family.minutes, head.first_minutes) if addon_line else family.minutes
    lines: list[UnitLine] = []
    if head_line:
        lines.append(UnitLine(head.code, head.kind, first_minutes, first_units))
    if addon_line:
        derived = None if head.addon in family.documented else head.code
        rest = family.minutes - (first_minutes if head_line else 0)
        lines.append(UnitLine(head.addon, CodeKind.ADDON, rest, addon_units, derived))
    if addon_units:
        notes.append(unit_notes.addon_note(family, addon_units))
    return lines


def _line_assignment(families: list[Family], units: Mapping[str, int]) -> dict[str, int]:
    """A family-level assignment of units as code-level lines (primary and add-on apart)."""
    assignment: dict[str, int] = {}
    for family in families:
        total = units[family.code]
        if family.head.addon is None:
            assignment[family.code] = total
        else:
            assignment[family.code] = min(total, 1)
            assignment[family.head.addon] = total - min(total, 1)
    return assignment
