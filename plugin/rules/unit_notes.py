"""The explanation trace of a unit decision: each step in plain words, with its source."""

from __future__ import annotations

from collections.abc import Sequence

from plugin.rules import sources
from plugin.rules.families import Family
from plugin.rules.model import Explanation, GroupKey, TieBreak
from plugin.rules.parameters import UnitTable

_TIE_BREAK_WORDS = {
    TieBreak.MOST_MINUTES: "most minutes",
    TieBreak.INPUT_ORDER: "documented first",
    TieBreak.CODE: "lower code",
}


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def group_note(key: GroupKey) -> Explanation:
    parts = [f"discipline {key.discipline}"]
    parts += [f"{name} {value}" for name, value in _optional_key_parts(key) if value]
    return Explanation(
        f"Counted on their own: the services of {', '.join(parts)}.",
        sources.DISCIPLINE_GROUPS.title,
    )


def _optional_key_parts(key: GroupKey) -> list[tuple[str, str | None]]:
    return [("date", key.date), ("patient", key.patient), ("provider", key.provider)]


def minutes_notes(family: Family) -> list[Explanation]:
    notes: list[Explanation] = []
    if len(family.blocks) > 1:
        parts = " + ".join(str(m) for m in family.blocks)
        notes.append(
            Explanation(
                f"{'/'.join(family.documented)} was documented in {len(family.blocks)} blocks "
                f"({parts} minutes): {family.minutes} minutes in all.",
                sources.SPLIT_BLOCKS.title,
            )
        )
    if family.no_time and family.head.is_timed:
        notes.append(
            Explanation(
                f"{', '.join(family.no_time)} has no documented time: it earns no units "
                "until its minutes are documented.",
                sources.TREATMENT_NOTE.title,
            )
        )
    return notes


def total_note(
    pool: Sequence[Family], timed_minutes: int, total_units: int, table: UnitTable
) -> Explanation:
    parts = " + ".join(f"{f.code} {f.minutes}" for f in pool)
    if total_units == 0:
        band = f"fewer than {table.first_unit_minutes} minutes: no timed unit is billable"
    else:
        start = table.first_unit_minutes + (total_units - 1) * table.unit_minutes
        end = start + table.unit_minutes - 1
        band = f"in the {start}–{end} minute band: {_plural(total_units, 'unit')} in all"
    return Explanation(
        f"Total timed minutes {parts} = {timed_minutes}, {band}.", sources.UNITS_8_MINUTE.title
    )


def whole_units_note(pool: Sequence[Family], step: int) -> Explanation:
    whole = ", ".join(f"{f.code} {f.minutes // step} ({f.minutes % step} left over)" for f in pool)
    return Explanation(f"Whole {step}-minute units first: {whole}.", sources.UNITS_8_MINUTE.title)


def remaining_note(remaining: int, chosen: Sequence[Family], step: int) -> Explanation:
    who = ", ".join(f"{f.code} ({f.minutes % step} minutes left over)" for f in chosen)
    verb = "it goes" if remaining == 1 else "they go"
    return Explanation(
        f"{_plural(remaining, 'unit')} left to give; {verb} to the largest leftover: {who}.",
        sources.UNITS_8_MINUTE.title,
    )


def tie_note(
    tied: Sequence[Family],
    winners: Sequence[Family],
    cutoff: int,
    order: Sequence[TieBreak],
    alternatives: int,
) -> Explanation:
    rule = ", then ".join(_TIE_BREAK_WORDS[r] for r in order)
    return Explanation(
        f"{', '.join(f.code for f in tied)} are tied at {cutoff} leftover minutes; by the "
        f"tie-break rule ({rule}) {', '.join(f.code for f in winners)} "
        f"{'gets' if len(winners) == 1 else 'get'} the unit. "
        f"{_plural(alternatives, 'other assignment')} equally valid (listed as alternatives).",
        sources.UNITS_TIE.title,
    )


def ama_note(pool: Sequence[Family], units: dict[str, int], table: UnitTable) -> Explanation:
    each = ", ".join(f"{f.code} {f.minutes} min → {units[f.code]}" for f in pool)
    return Explanation(
        f"Per-code rule: each timed code counts its own minutes on the {table.unit_minutes}-minute"
        f" table, nothing pooled: {each}.",
        sources.CPT_TIME_RULE.title,
    )


def increment_note(family: Family, units: int) -> Explanation:
    head = family.head
    return Explanation(
        f"{head.code} is timed in its own increments: the first {head.first_minutes} minutes "
        f"(reached at {head.first_minutes // 2 + 1}), then {head.addon} for each further "
        f"{head.addon_minutes}: {family.minutes} minutes give {_plural(units, 'unit')}.",
        sources.CPT_TIME_RULE.title,
    )


def addon_note(family: Family, addon_units: int) -> Explanation:
    head = family.head
    return Explanation(
        f"{head.code} takes the first unit (first {head.first_minutes} minutes); "
        f"the other {_plural(addon_units, 'unit')} "
        f"{'goes' if addon_units == 1 else 'go'} to add-on {head.addon}.",
        sources.ADDON_CODES.title,
    )


def untimed_note(family: Family) -> Explanation:
    minutes = f"; its {family.minutes} minutes count in total treatment time only"
    return Explanation(
        f"{family.code} is untimed: 1 unit for the day whatever the time"
        f"{minutes if family.minutes else ''}.",
        sources.UNTIMED.title,
    )


def treatment_note(treatment: int) -> Explanation:
    return Explanation(
        f"Total treatment time: {treatment} minutes, timed and untimed together.",
        sources.TREATMENT_NOTE.title,
    )
