"""The code systems TheraCharge reads and writes, by their canonical URLs (docs/architecture.md
"Code systems"). The catalog names each code's system too (config/catalog.yaml `systems`)."""

from __future__ import annotations

CPT = "http://www.ama-assn.org/go/cpt"  # CPT codes and modifier 59
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"  # G0283, GP/GO/GN, KX, CQ/CO, X
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NUCC = "http://nucc.org/provider-taxonomy"
UCUM = "http://unitsofmeasure.org"
# CMS place-of-service codes (11 office, 22 on-campus outpatient hospital …), as US Core and the
# CARIN profiles name them on Location.type
PLACE_OF_SERVICE = (
    "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
)
NPI = "http://hl7.org/fhir/sid/us-npi"  # National Provider Identifier (US Core)
# Identifier types (HL7 v2 table 0203): MR is a medical record number
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
