"""Benchmark: what reading a treatment note costs, per note, on the labelled corpus.

Run: `.venv/bin/python bench/bench_notes.py [--repeat 20]`. Reads and checks every note of
tests/corpus/ (405 notes in seven charting styles) as the decision does — the reading (labels,
sections, clauses, aliases, senses, steps), the code-choice review, skill and measures — and
prints microseconds per note (median of the rounds) and notes per second. Run with `PYTHONPATH`
pointing at another tree (a `git worktree`) to measure that tree's reading the same way: before
`plugin.rules.documentation.check_notes` existed, its path is replayed as the decision took it
(the note and `Procedure.code.text` read, then reviewed; the measure patterns searched through
the note). Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"


def _notes() -> list[dict[str, Any]]:
    notes = []
    for path in sorted(CORPUS.glob("*.yaml")):
        notes += yaml.safe_load(path.read_text(encoding="utf-8"))["notes"]
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    import plugin
    from plugin.config.files import load_settings

    vocabulary = load_settings().vocabulary
    notes = _notes()
    try:
        from plugin.rules.documentation import check_notes

        def one(note: dict[str, Any]) -> object:
            return check_notes(note["billed"], [note["note"]], vocabulary)

    except ImportError:  # a tree from before check_notes
        from plugin.rules.activity import read_note, review_code

        def one(note: dict[str, Any]) -> object:
            reading = read_note([note["note"]], vocabulary)
            if note.get("code_text"):
                reading = reading.followed_by(read_note([note["code_text"]], vocabulary))
            vocabulary.measured([note["note"]])
            return review_code(note["billed"], reading, (), (), vocabulary)

    for note in notes:  # warm the stem cache and the compiled patterns
        one(note)
    rounds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        for note in notes:
            one(note)
        rounds.append((time.perf_counter() - start) / len(notes))
    per_note = statistics.median(rounds)
    print(f"tree: {Path(plugin.__file__).parent.parent}")
    print(f"notes: {len(notes)}, rounds: {args.repeat}")
    print(f"per note: {per_note * 1e6:.1f} µs (median; min {min(rounds) * 1e6:.1f} µs)")
    print(f"notes per second: {1 / per_note:,.0f}")


if __name__ == "__main__":
    main()
