"""The code catalog schema: validates config/catalog.yaml and builds a rules Catalog."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from plugin.rules.model import Catalog, CodeDefinition, CodeKind, Discipline

CODE_PATTERN = r"^(\d{4}[0-9A-Z]|[A-V]\d{4})$"  # CPT (5 characters) or HCPCS Level II


class CodeSchema(Schema):
    code = fields.String(required=True, validate=validate.Regexp(CODE_PATTERN))
    system = fields.String(required=True)
    label = fields.String(required=True, validate=validate.Length(min=1, max=80))
    kind = fields.Enum(CodeKind, by_value=True, required=True)
    disciplines = fields.List(
        fields.Enum(Discipline, by_value=True), required=True, validate=validate.Length(min=1)
    )
    source = fields.String(required=True, validate=validate.Length(min=1))
    evidence = fields.String(load_default="V", validate=validate.OneOf(["V", "S", "U"]))
    addon = fields.String(load_default=None)
    primary = fields.String(load_default=None)
    first_minutes = fields.Integer(load_default=15, strict=True, validate=validate.Range(min=1))
    addon_minutes = fields.Integer(load_default=15, strict=True, validate=validate.Range(min=1))
    body_site = fields.Boolean(load_default=False)
    supervised = fields.Boolean(load_default=False)
    evaluative = fields.Boolean(load_default=False)

    @validates_schema
    def _family_fields(self, data: dict[str, Any], **_: Any) -> None:
        kind = data["kind"]
        if kind is CodeKind.ADDON and not data.get("primary"):
            raise ValidationError("an addon code names its primary", "primary")
        if kind is not CodeKind.ADDON and data.get("primary"):
            raise ValidationError("only an addon code has a primary", "primary")
        if kind is CodeKind.TIMED_INCREMENT and not data.get("addon"):
            raise ValidationError("a timed-increment code names its add-on", "addon")
        if kind in (CodeKind.UNTIMED, CodeKind.ADDON) and data.get("addon"):
            raise ValidationError(f"a {kind.value} code has no add-on", "addon")


class CatalogSchema(Schema):
    systems = fields.Dict(keys=fields.String(), values=fields.Url(), required=True)
    codes = fields.List(fields.Nested(CodeSchema), required=True)

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[int, Any] = {}
        seen: dict[str, int] = {}
        by_code = {c["code"]: c for c in data["codes"]}
        for index, entry in enumerate(data["codes"]):
            problems = _entry_problems(entry, seen, by_code, data["systems"])
            if problems:
                errors[index] = {field: [msg] for field, msg in problems}
            seen.setdefault(entry["code"], index)
        if errors:
            raise ValidationError({"codes": errors})

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Catalog:
        systems = data["systems"]
        codes = {
            c["code"]: CodeDefinition(
                code=c["code"],
                system=systems[c["system"]],
                label=c["label"],
                kind=c["kind"],
                disciplines=tuple(c["disciplines"]),
                source=c["source"],
                addon=c["addon"],
                primary=c["primary"],
                first_minutes=c["first_minutes"],
                addon_minutes=c["addon_minutes"],
                body_site=c["body_site"],
                supervised=c["supervised"],
                evaluative=c["evaluative"],
            )
            for c in data["codes"]
        }
        return Catalog(codes)


def _entry_problems(
    entry: dict[str, Any],
    seen: dict[str, int],
    by_code: dict[str, dict[str, Any]],
    systems: dict[str, str],
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    code = entry["code"]
    if code in seen:
        problems.append(("code", f"duplicate code {code} (first at codes[{seen[code]}])"))
    if entry["system"] not in systems:
        problems.append(("system", f"unknown system {entry['system']!r}"))
    addon, primary = entry.get("addon"), entry.get("primary")
    if addon and by_code.get(addon, {}).get("primary") != code:
        problems.append(("addon", f"add-on {addon} must be in the catalog with primary {code}"))
    if primary and by_code.get(primary, {}).get("addon") != code:
        problems.append(("primary", f"primary {primary} must be in the catalog with addon {code}"))
    return problems
