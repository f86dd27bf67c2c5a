"""The decision core's records are frozen, hashable and outside the garbage collector in both
builds (plugin/rules/records.py): mypyc compiles a class without its class keywords, so a
record compiled from `class X(Record, frozen=True, gc=False)` must take them from its base."""

from __future__ import annotations

import gc
import importlib
import pkgutil
from datetime import UTC, datetime

import msgspec
import pytest
from msgspec.structs import replace

import plugin.rules
from plugin.rules.records import Record
from plugin.rules.visit import Coding, Finding, Performer, Role, Severity, VisitService


def _records() -> list[type[Record]]:
    for module in pkgutil.iter_modules(plugin.rules.__path__):
        importlib.import_module(f"plugin.rules.{module.name}")
    found: list[type[Record]] = []
    todo = list(Record.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_struct_of_the_core_is_a_record() -> None:
    """A Struct declared in plugin/rules without the base would be mutable and tracked once
    compiled; each one derives from Record."""
    for module in pkgutil.iter_modules(plugin.rules.__path__):
        loaded = importlib.import_module(f"plugin.rules.{module.name}")
        for value in vars(loaded).values():
            if (
                isinstance(value, type)
                and issubclass(value, msgspec.Struct)
                and value.__module__ == loaded.__name__
            ):
                assert issubclass(value, Record), value


@pytest.mark.parametrize("record", _records(), ids=lambda cls: cls.__name__)
def test_a_record_is_frozen_and_untracked(record: type[Record]) -> None:
    config = record.__struct_config__
    assert config.frozen, record
    assert not config.gc, record


def test_a_record_cannot_change_and_hashes_by_value() -> None:
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    performer = Performer("Practitioner/pt", Role.PT, minutes=30, start=start)
    service = VisitService(
        reference="Procedure/1",
        status="completed",
        codings=(Coding("http://www.ama-assn.org/go/cpt", "97110"),),
        code="97110",
        minutes=30,
        minutes_source="extension",
        start=start,
        end=None,
        date="2026-11-02",
        performers=(performer,),
    )
    with pytest.raises(AttributeError):
        service.minutes = 45  # type: ignore[misc]
    same = VisitService(**{f: getattr(service, f) for f in service.__struct_fields__})
    assert same == service
    assert hash(same) == hash(service)
    assert len({service, same}) == 1
    finding = Finding("missing-time", Severity.HOLD, "no minutes", resource="Procedure/1")
    changed = replace(service, findings=(finding,))
    assert changed.findings == (finding,)
    assert service.findings == ()
    assert changed != service
    assert not gc.is_tracked(changed)
    assert not gc.is_tracked(performer)


def test_the_facts_empty_list_defaults_are_not_shared() -> None:
    """fhir_mappings' facts are mutable Structs whose list defaults are written `= []` (the
    compiled build refuses `field(default_factory=list)` there): each instance has its own."""
    from fhir_mappings.minutes import Timing

    first, second = Timing(policy=None), Timing(policy=None)  # type: ignore[arg-type]
    first.findings.append(Finding("x", Severity.INFO, "x"))
    first.performer_times.append((1, None, None))
    assert second.findings == []
    assert second.performer_times == []
