"""Schemas of the episode rules (config/rules/episode.yaml) and the fee schedule
(config/fees.yaml); the admin API validates a stored fee schedule with the same schema."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from plugin.rules.episode import EpisodeRules, FeeSchedule, KxThreshold
from plugin.rules.parameters import DatedParameter, DatedValue, Reference
from plugin.schemas.unit_rules import ReferenceSchema

_CODE = re.compile(r"[A-Z0-9]{5}")
_AMOUNT = fields.Decimal(required=True, places=2, validate=validate.Range(min=0))


class ReportCodeSchema(Schema):
    system = fields.String(required=True, validate=validate.Length(min=1))
    code = fields.String(required=True, validate=validate.Length(min=1))
    display = fields.String(load_default="")
    source = fields.String(required=True, validate=validate.Length(min=1))


class PlanOfCareSchema(Schema):
    certification_extension = fields.Url(required=True, require_tld=False)
    certify_within_days = fields.Integer(load_default=30, validate=validate.Range(min=0))
    max_days = fields.Integer(load_default=90, validate=validate.Range(min=1))
    accept_late_days = fields.Integer(load_default=30, validate=validate.Range(min=0))
    delay_reason_extension = fields.Url(load_default=None, require_tld=False)
    certification_routes = fields.List(
        fields.String(validate=validate.OneOf(["document", "provenance", "order", "extension"])),
        load_default=lambda: ["document", "provenance", "order", "extension"],
        validate=validate.Length(min=1),
    )
    plan_document_codes = fields.List(fields.Nested(ReportCodeSchema), load_default=list)


class ProgressSchema(Schema):
    warn_from_day = fields.Integer(load_default=8, validate=validate.Range(min=1))
    hold_after_day = fields.Integer(load_default=10, validate=validate.Range(min=1))
    lookback_days = fields.Integer(load_default=120, validate=validate.Range(min=1, max=730))
    codes = fields.List(fields.Nested(ReportCodeSchema), required=True)

    @validates_schema
    def _order(self, data: dict[str, Any], **_: Any) -> None:
        if data["warn_from_day"] > data["hold_after_day"]:
            raise ValidationError("must not come after hold_after_day", "warn_from_day")


class ThresholdSchema(Schema):
    since = fields.Date(required=True)
    pt_slp = _AMOUNT
    ot = _AMOUNT
    reference = fields.Nested(ReferenceSchema, required=True)


class KxSchema(Schema):
    warn_at = fields.Decimal(load_default=Decimal("0.9"), validate=validate.Range(min=0, max=1))
    thresholds = fields.List(
        fields.Nested(ThresholdSchema), required=True, validate=validate.Length(min=1)
    )


class EpisodeRulesSchema(Schema):
    plan_of_care = fields.Nested(PlanOfCareSchema, required=True)
    progress_reports = fields.Nested(ProgressSchema, required=True)
    kx = fields.Nested(KxSchema, required=True)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> EpisodeRules:
        plan, progress, kx = data["plan_of_care"], data["progress_reports"], data["kx"]
        thresholds = DatedParameter(
            "kx_thresholds",
            [
                DatedValue(t["since"], KxThreshold(t["pt_slp"], t["ot"]), t["reference"])
                for t in kx["thresholds"]
            ],
        )
        return EpisodeRules(
            kx_thresholds=thresholds,
            kx_warn_at=kx["warn_at"],
            progress_warn_from=progress["warn_from_day"],
            progress_hold_after=progress["hold_after_day"],
            report_codes=frozenset((c["system"], c["code"]) for c in progress["codes"]),
            lookback_days=progress["lookback_days"],
            certify_within_days=plan["certify_within_days"],
            plan_max_days=plan["max_days"],
            certification_extension=plan["certification_extension"],
            accept_late_days=plan["accept_late_days"],
            delay_reason_extension=plan["delay_reason_extension"] or "",
            certification_routes=tuple(dict.fromkeys(plan["certification_routes"])),
            plan_document_codes=frozenset(
                (c["system"], c["code"]) for c in plan["plan_document_codes"]
            ),
        )


class ScheduleSchema(Schema):
    effective = fields.Date(required=True)
    source = fields.String(required=True, validate=validate.Length(min=1))
    amounts = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1)),
        values=fields.Decimal(places=2, validate=validate.Range(min=0)),
        required=True,
    )


class FeeScheduleSchema(Schema):
    """Amounts are keyed by CPT/HCPCS code (five letters or digits); an amount for a code the
    catalog does not hold prices nothing."""

    currency = fields.String(load_default="USD", validate=validate.Regexp(r"^[A-Z]{3}$"))
    schedules = fields.List(fields.Nested(ScheduleSchema), required=True)

    @validates_schema
    def _known(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[int, dict[str, Any]] = {}
        seen: dict[date, int] = {}
        for index, schedule in enumerate(data["schedules"]):
            if schedule["effective"] in seen:
                first = seen[schedule["effective"]]
                errors[index] = {"effective": [f"same date as schedules[{first}]"]}
            seen.setdefault(schedule["effective"], index)
            unknown = sorted(c for c in schedule["amounts"] if not _CODE.fullmatch(c))
            if unknown:
                errors.setdefault(index, {})["amounts"] = [
                    f"not CPT/HCPCS codes: {', '.join(unknown)}"
                ]
        if errors:
            raise ValidationError({"schedules": errors})

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> FeeSchedule:
        dated: dict[str, list[DatedValue[Decimal]]] = {}
        for schedule in data["schedules"]:
            reference = Reference(schedule["source"])
            for code, amount in schedule["amounts"].items():
                dated.setdefault(code, []).append(
                    DatedValue(schedule["effective"], amount, reference)
                )
        sources = "; ".join(
            f"{s['effective'].isoformat()}: {s['source']}" for s in data["schedules"]
        )
        return FeeSchedule(
            {code: DatedParameter(f"fee {code}", values) for code, values in dated.items()},
            data["currency"],
            sources,
        )
