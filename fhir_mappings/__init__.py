"""FHIR R4 ↔ TheraCharge: the only package that imports fhir.resources (R4B models)."""
