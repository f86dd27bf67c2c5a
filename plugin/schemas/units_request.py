"""The `theracharge units` request: methods, services and minutes, checked against the catalog."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from marshmallow.experimental.context import Context

from plugin.rules.model import Catalog, Discipline, Method, Service, TieBreak


class Minutes(fields.Field[int]):
    """A whole, non-negative number of minutes: 7.5, "7", true and -1 are all refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(f"must be a non-negative whole number of minutes, got {value!r}")
        return value


class Choice(fields.Enum):  # type: ignore[type-arg]
    """An enum by value whose error names what was given and what is allowed."""

    def __init__(self, enum: type[Any], kind: str, **kwargs: Any) -> None:
        super().__init__(enum, by_value=True, **kwargs)
        self.kind = kind

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return self.enum(value)
        except (ValueError, TypeError) as exc:
            allowed = " or ".join(str(m.value) for m in self.enum)
            raise ValidationError(f"unknown {self.kind} {value!r} (expected {allowed})") from exc


class ServiceSchema(Schema):
    code = fields.String(required=True)
    minutes = Minutes(load_default=None)
    discipline = Choice(Discipline, "discipline", load_default=None)
    date = fields.Date(load_default=None)
    patient = fields.String(load_default=None)
    provider = fields.String(load_default=None)

    @validates_schema
    def _against_catalog(self, data: dict[str, Any], **_: Any) -> None:
        catalog: Catalog = Context[Catalog].get()
        problem = _service_problem(data, catalog)
        if problem:
            raise ValidationError(problem[1], problem[0])


class UnitsRequestSchema(Schema):
    method = Choice(Method, "method", load_default=Method.CMS)
    services = fields.List(fields.Nested(ServiceSchema), required=True)
    date_of_service = fields.Date(load_default=None)
    tie_break = fields.List(
        Choice(TieBreak, "tie-break rule"),
        load_default=None,
        validate=validate.Length(min=1),
    )


def _service_problem(service: dict[str, Any], catalog: Catalog) -> tuple[str, str] | None:
    code = service["code"]
    if code not in catalog:
        return "code", f"unknown code {code}"
    definition = catalog[code]
    if definition.is_timed and service["minutes"] is None:
        return "minutes", f"required for timed code {code}"
    discipline = service["discipline"]
    if discipline is not None and discipline not in definition.disciplines:
        allowed = ", ".join(definition.disciplines)
        return "discipline", f"{code} is not billed under {discipline} (catalog: {allowed})"
    return None


@dataclass(frozen=True, slots=True)
class UnitsRequest:
    method: Method
    services: tuple[Service, ...]
    date_of_service: date | None
    tie_break: tuple[TieBreak, ...] | None


def parse_units_request(raw: object, catalog: Catalog) -> UnitsRequest:
    """Validate a decoded JSON request; raises ValidationError naming every bad field."""
    if not isinstance(raw, dict):
        raise ValidationError("expected a JSON object with a services list")
    with Context(catalog):
        data = UnitsRequestSchema().load(raw)
    services = tuple(
        Service(
            code=s["code"],
            minutes=s["minutes"],
            discipline=s["discipline"],
            date=s["date"].isoformat() if s["date"] else None,
            patient=s["patient"],
            provider=s["provider"],
        )
        for s in data["services"]
    )
    tie_break = tuple(data["tie_break"]) if data["tie_break"] else None
    return UnitsRequest(data["method"], services, data["date_of_service"], tie_break)
