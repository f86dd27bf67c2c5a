"""Synthetic therapy visits as FHIR R4, deterministic for a seed, with a controlled share of
documentation problems: for the tests, the demo and the benchmarks (`theracharge sample`)."""

from plugin.sample.clinic import SampleSpec, as_transaction, generate
from plugin.sample.us_core import SHAPES, us_core
from plugin.sample.vocabulary import PROBLEM_TAG, PROBLEMS

__all__ = [
    "PROBLEMS",
    "PROBLEM_TAG",
    "SHAPES",
    "SampleSpec",
    "as_transaction",
    "generate",
    "us_core",
]
