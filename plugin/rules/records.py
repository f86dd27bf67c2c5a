"""The base of the decision core's records (issue 19; docs/performance.md "The core's records").

The records built per procedure, finding and line — a visit and its services, performers,
codings and findings, a charge line, units, a note's reading — are msgspec Structs: frozen
(immutable and hashable, as the frozen dataclasses they replace were) and left out of the
garbage collector (a record holds values and other records only, so it is never in a cycle).
A Struct is built in about a seventh of a frozen dataclass's time and copied with
`msgspec.structs.replace` in about a twelfth of `dataclasses.replace`'s (bench/README.md).

Each record says `frozen=True, gc=False` itself, for its reader and for mypy, which checks that
a frozen record's subclass is frozen too. mypyc builds a compiled class without its class
keywords, so in the compiled build a record takes them from this base; this module is never
compiled (hatch_build.py `LEFT_OUT`), and tests/test_records.py holds every record frozen and
untracked in both builds.
"""

from __future__ import annotations

from msgspec import Struct


class Record(Struct, frozen=True, gc=False):
    """A frozen record of the decision core, outside the garbage collector."""
