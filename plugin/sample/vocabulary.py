"""The sample's vocabulary: code systems, care plans by discipline, staff roles, body sites,
diagnoses, payers, objective measures and the documentation problems it can plant.

Every code is real and sourced: CPT/HCPCS from the catalog; SNOMED CT procedures from
config/mappings/snomed-therapy.json; SNOMED CT body sites from DICOM PS3.16 CID 4031; ICD-10-CM
diagnoses common in outpatient therapy; NUCC taxonomy roles from config/roles.yaml.
"""

from __future__ import annotations

from datetime import timedelta, timezone

LOCAL = "https://ehr.example.org/fhir/CodeSystem/therapy-charge-codes"
PAYER_ID = "https://ehr.example.org/fhir/payer-id"
DISCIPLINE_TYPES = "https://theracharge.example/fhir/CodeSystem/therapy-discipline"
PROBLEM_TAG = "https://theracharge.example/fhir/CodeSystem/sample-problem"
CLINIC_ZONE = timezone(timedelta(hours=-5))  # a clinic on US Central daylight time

# (CPT code, SNOMED CT alternative or None, local code or None, minutes range or None if untimed)
PLANS: dict[str, list[tuple[str, str | None, str | None, tuple[int, int] | None]]] = {
    "PT": [
        ("97110", "61502001", "PT-THEREX", (8, 30)),
        ("97112", "226049009", "PT-NMR", (8, 25)),
        ("97140", None, "PT-MANUAL", (5, 20)),
        ("97530", "57456004", "PT-THERACT", (8, 25)),
        ("97116", "183295006", "PT-GAIT", (8, 20)),
        ("97035", "89002000", "PT-US", (5, 10)),
    ],
    "OT": [
        ("97535", "183345007", "OT-SELFCARE", (8, 30)),
        ("97530", None, "OT-THERACT", (8, 25)),
        ("97110", "1121002", None, (8, 20)),
    ],
    "SLP": [
        ("92507", "5154007", "SLP-TX", None),
        ("92526", None, "SLP-SWALLOW-TX", None),
        ("97129", "228544000", "SLP-COG", (10, 40)),
    ],
}
EVALUATIONS = {
    "PT": ("97162", "PT-EVAL-MOD"),
    "OT": ("97166", "OT-EVAL-MOD"),
    "SLP": ("92610", "SLP-SWALLOW-EVAL"),
}
ROLES = {
    "PT": ("225100000X", "225200000X"),
    "OT": ("225X00000X", "224Z00000X"),
    "SLP": ("235Z00000X", None),
}
BODY_SITES = [
    ("72696002", "Knee"),
    ("16982005", "Shoulder"),
    ("29836001", "Hip"),
    ("122496007", "Lumbar spine"),
    ("122494005", "Cervical spine"),
    ("85562004", "Hand"),
]
DIAGNOSES = {
    "PT": [
        ("M54.50", "Low back pain, unspecified"),
        ("M25.561", "Pain in right knee"),
        ("M25.511", "Pain in right shoulder"),
        ("R26.89", "Other abnormalities of gait and mobility"),
    ],
    "OT": [("M62.81", "Muscle weakness (generalized)"), ("M25.641", "Stiffness of right hand")],
    "SLP": [("R13.12", "Dysphagia, oropharyngeal phase"), ("R47.01", "Aphasia")],
}
PAYERS = [
    ("MEDICARE-B", "Medicare Part B"),
    ("UHC-COMM", "UnitedHealthcare"),
    ("COMM-AMA", "Example Commercial"),
    ("OTHER-PLAN", "A payer not in the table"),
]
MEASURES = [
    "Knee flexion range of motion",
    "Grip strength",
    "Berg balance score",
    "Six-minute walk distance",
    "Functional swallow scale",
]

# Documentation problems a visit may carry (one each), named by what is wrong in the record.
PROBLEMS = [
    "no-time", "datetime-only", "end-before-start", "no-end", "too-long", "outside-encounter",
    "overlap", "under-8", "total-mismatch", "unmapped-code", "not-done", "no-coverage",
    "unknown-payer", "no-performer-role", "no-performer", "aide", "assistant-alone",
    "group-session", "no-body-site", "no-note", "no-observation", "no-diagnosis", "no-reason",
    "no-goal", "vague-note", "no-skill", "wrong-code", "concurrent", "goal-unlinked",
]  # fmt: skip
# Problems that need a timed procedure to land on.
TIMED_PROBLEMS = {
    "no-time", "datetime-only", "end-before-start", "no-end", "no-observation", "no-note",
    "too-long", "overlap", "under-8", "group-session", "total-mismatch", "vague-note",
}  # fmt: skip
TOTAL_TIMED_URL = "https://theracharge.example/fhir/StructureDefinition/total-timed-minutes"
CERTIFIED_URL = "https://theracharge.example/fhir/StructureDefinition/plan-of-care-certified"
AIDE_ROLE = ("https://theracharge.example/fhir/CodeSystem/therapy-role", "aide")
NEEDS_BODY_SITE = {
    "97110",
    "97140",
    "97035",
}  # the sample's codes with body_site: true in the catalog
