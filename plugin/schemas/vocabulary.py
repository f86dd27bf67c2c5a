"""Schema of the documentation vocabulary (config/rules/activities.yaml); the admin API
validates a stored vocabulary with the same schema."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from plugin.rules.activity import (
    AFTER,
    ALIAS,
    ASSESSMENT,
    BEFORE,
    CONCEPT,
    GOAL,
    HEADING,
    PLAN,
    PURPOSE,
    REPORT,
    REVIEW,
    REVIEWED,
    SECTION,
    SENSE,
    SENTENCE,
    SKILL,
    STEP,
    TASK,
    VAGUE,
    CodeNote,
    Concept,
    Negation,
    StepGroup,
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


class AliasSchema(Schema):
    reads = _TEXT  # what the written forms stand for ("ambulation")
    written = _terms()  # as therapists write it ("amb", "ambul", "ambualtion")


class AliasesSchema(Schema):
    entries = fields.List(fields.Nested(AliasSchema), required=True)
    source = _TEXT


class SenseSchema(Schema):
    name = _TEXT  # what the words are instead of an activity ("equipment", "a test")
    terms = _terms()


class SensesSchema(Schema):
    entries = fields.List(fields.Nested(SenseSchema), required=True)
    source = _TEXT


class StepsSchema(Schema):
    code = fields.String(required=True, validate=_CODE)
    name = _TEXT  # the task ("toileting")
    tasks = _terms()  # words that name the task being done
    steps = _terms()  # activities that are steps of it when it is done
    source = _TEXT


class SectionsSchema(Schema):
    """Labels of charted text: SOAP sections hold until the next one; the other kinds hold for
    their own line (or, with nothing after the label, for the lines that follow); headings are
    the billing categories' names, never evidence."""

    persistent = fields.Dict(
        keys=fields.String(validate=validate.OneOf((REPORT, "treatment", ASSESSMENT, PLAN))),
        values=_terms(),
        required=True,
    )
    labels = fields.Dict(
        keys=fields.String(validate=validate.OneOf((GOAL, PLAN, REPORT, ASSESSMENT, REVIEWED))),
        values=_terms(),
        required=True,
    )
    headings = _terms()
    source = _TEXT


class ContextSchema(Schema):
    purpose = _terms()  # from the cue to the end of its clause
    review = _terms()  # the clause and the rest of its sentence
    source = _TEXT


class ReviewSchema(Schema):
    strong = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    confidence = fields.Float(required=True, validate=validate.Range(min=0.5, max=1))
    # a two-activity block needs the other code to hold at least this share of the evidence
    split_share = fields.Float(load_default=0.35, validate=validate.Range(min=0, max=0.5))
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
    # added after the first stored versions: absent from one, they read as empty
    aliases = fields.Nested(AliasesSchema, load_default=None)
    senses = fields.Nested(SensesSchema, load_default=None)
    steps = fields.List(fields.Nested(StepsSchema), load_default=list)
    sections = fields.Nested(SectionsSchema, load_default=None)
    context = fields.Nested(ContextSchema, load_default=None)

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
        lexicon: list[tuple[str, str, object]] = [
            (t, CONCEPT, concept) for raw, concept in concepts for t in raw["terms"]
        ]
        lexicon += [(t, kind, None) for kind in (BEFORE, AFTER, SENTENCE) for t in negation[kind]]
        lexicon += [(t, SKILL, None) for t in data["skill"]["terms"]]
        lexicon += [(t, VAGUE, None) for t in data["vague"]["terms"]]
        context = data.get("context") or {}
        lexicon += [(t, PURPOSE, None) for t in context.get("purpose", ())]
        lexicon += [(t, REVIEW, None) for t in context.get("review", ())]
        senses = (data.get("senses") or {}).get("entries", ())
        lexicon += [(t, SENSE, sense["name"]) for sense in senses for t in sense["terms"]]
        steps = data.get("steps") or ()
        # a term may name the task or a step of several groups: one entry, every group
        for kind, key in ((TASK, "tasks"), (STEP, "steps")):
            groups: dict[str, list[int]] = {}
            for number, group in enumerate(steps):
                for t in group[key]:
                    groups.setdefault(" ".join(words(t)), []).append(number)
            lexicon += [(t, kind, tuple(numbers)) for t, numbers in groups.items()]
        aliases = (data.get("aliases") or {}).get("entries", ())
        sections = data.get("sections") or {"persistent": {}, "labels": {}, "headings": []}
        labels: list[tuple[str, str, object]] = [
            (t, SECTION, ("" if kind == "treatment" else kind, True))
            for kind, terms in sections["persistent"].items()
            for t in terms
        ]
        labels += [
            (t, SECTION, (kind, False)) for kind, terms in sections["labels"].items() for t in terms
        ]
        labels += [(t, HEADING, None) for t in sections["headings"]]
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
            measure_patterns=tuple(
                (name, re.compile(pattern, re.IGNORECASE)) for name, pattern in patterns.items()
            ),
            aliases=Terms(
                (t, ALIAS, words(alias["reads"])) for alias in aliases for t in alias["written"]
            ),
            labels=Terms(labels),
            steps=tuple(StepGroup(group["code"], group["name"]) for group in steps),
            strong=review["strong"],
            confidence=review["confidence"],
            split_share=review["split_share"],
            observation_weight=review["observation_weight"],
        )
