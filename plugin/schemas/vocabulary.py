"""Schema of the documentation vocabulary (config/rules/activities.yaml); the admin API
validates a stored vocabulary with the same schema."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from plugin.rules.activity import (
    AFTER,
    BEFORE,
    CONCEPT,
    SENTENCE,
    SKILL,
    VAGUE,
    CodeNote,
    Concept,
    Negation,
    Terms,
    Vocabulary,
    words,
)

_CODE = validate.Regexp(r"^[A-Z0-9]{5}$", error="a CPT/HCPCS code of five characters")
_TEXT = fields.String(required=True, validate=validate.Length(min=1))


def _terms(required: bool = True) -> fields.List[str]:
    item = fields.String(validate=validate.Length(min=1))
    if required:
        return fields.List(item, required=True)
    return fields.List(item, load_default=list)


class CodeNoteSchema(Schema):
    name = _TEXT
    distinction = _TEXT
    source = _TEXT


class NeighbourSchema(Schema):
    codes = fields.List(
        fields.String(validate=_CODE), required=True, validate=validate.Length(min=2)
    )
    source = _TEXT


class ConceptSchema(Schema):
    name = _TEXT
    code = fields.String(required=True, validate=_CODE)
    weight = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10))
    terms = _terms()
    snomed = _terms(required=False)
    observations = _terms(required=False)
    source = _TEXT


class NegationSchema(Schema):
    before = _terms()
    after = _terms()
    sentence = _terms()
    stop = _terms()
    window = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10))
    source = _TEXT


class TermListSchema(Schema):
    terms = _terms()
    source = _TEXT


class MeasuresSchema(Schema):
    patterns = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    source = _TEXT

    @validates_schema
    def _compiles(self, data: dict[str, Any], **_: Any) -> None:
        for name, pattern in data["patterns"].items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValidationError(
                    f"{name}: not a regular expression ({exc})", "patterns"
                ) from exc


class ReviewSchema(Schema):
    strong = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    confidence = fields.Float(required=True, validate=validate.Range(min=0.5, max=1))
    observation_weight = fields.Integer(load_default=2, validate=validate.Range(min=0, max=10))
    source = _TEXT


class VocabularySchema(Schema):
    codes = fields.Dict(keys=fields.String(validate=_CODE), values=fields.Nested(CodeNoteSchema))
    neighbours = fields.List(fields.Nested(NeighbourSchema), required=True)
    concepts = fields.List(
        fields.Nested(ConceptSchema), required=True, validate=validate.Length(min=1)
    )
    negation = fields.Nested(NegationSchema, required=True)
    skill = fields.Nested(TermListSchema, required=True)
    vague = fields.Nested(TermListSchema, required=True)
    measures = fields.Nested(MeasuresSchema, required=True)
    review = fields.Nested(ReviewSchema, required=True)

    @validates_schema
    def _named(self, data: dict[str, Any], **_: Any) -> None:
        """Every neighbour code has its words (code note) and at least one concept."""
        with_concepts = {c["code"] for c in data.get("concepts") or ()}
        for group in data.get("neighbours") or ():
            for code in group["codes"]:
                if code not in (data.get("codes") or {}):
                    raise ValidationError(f"{code}: a neighbour needs an entry in codes", "codes")
                if code not in with_concepts:
                    raise ValidationError(f"{code}: a neighbour needs a concept", "concepts")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Vocabulary:
        concepts = [
            (c, Concept(c["name"], c["code"], c["weight"], c["source"])) for c in data["concepts"]
        ]
        neighbours: dict[str, set[str]] = {}
        for group in data["neighbours"]:
            for code in group["codes"]:
                neighbours.setdefault(code, set()).update(group["codes"])
        negation = data["negation"]
        review = data["review"]
        patterns = data["measures"]["patterns"]
        lexicon: list[tuple[str, str, Concept | None]] = [
            (t, CONCEPT, concept) for raw, concept in concepts for t in raw["terms"]
        ]
        lexicon += [(t, kind, None) for kind in (BEFORE, AFTER, SENTENCE) for t in negation[kind]]
        lexicon += [(t, SKILL, None) for t in data["skill"]["terms"]]
        lexicon += [(t, VAGUE, None) for t in data["vague"]["terms"]]
        return Vocabulary(
            codes={
                code: CodeNote(n["name"], n["distinction"], n["source"])
                for code, n in (data.get("codes") or {}).items()
            },
            neighbours={code: frozenset(group) for code, group in neighbours.items()},
            lexicon=Terms(lexicon),
            observation_terms=Terms(
                (t, CONCEPT, concept) for raw, concept in concepts for t in raw["observations"]
            ),
            snomed={code: concept for raw, concept in concepts for code in raw["snomed"]},
            negation=Negation(
                frozenset(w for t in negation["stop"] for w in words(t)), negation["window"]
            ),
            measures=re.compile(
                "|".join(f"(?P<m{n}>{p})" for n, p in enumerate(patterns.values())),
                re.IGNORECASE,
            ),
            measure_names=tuple(patterns),
            strong=review["strong"],
            confidence=review["confidence"],
            observation_weight=review["observation_weight"],
        )
