"""The rule sources a decision cites, with links to where each can be read."""

from __future__ import annotations

from plugin.rules.parameters import Reference

_CH5 = "https://www.cms.gov/regulations-and-guidance/guidance/manuals/downloads/clm104c05.pdf"
_CH15 = "https://www.cms.gov/regulations-and-guidance/guidance/manuals/downloads/bp102c15.pdf"

UNITS_8_MINUTE = Reference("CMS Pub 100-04 ch.5 §20.2 C", _CH5)
UNITS_TIE = Reference("CMS Pub 100-04 ch.5 §20.2 C, Examples 2 and 5", _CH5)
UNTIMED = Reference("CMS Pub 100-04 ch.5 §20.2 B", _CH5)
TIMED_15 = Reference("CMS Pub 100-04 ch.5 §20.2 A", _CH5)
DISCIPLINE_GROUPS = Reference("Pub 100-02 ch.15 §220.1.2; Pub 100-04 ch.5 §20.2 D", _CH15)
BILLING_DAY = Reference(
    "CMS Pub 100-04 ch.5 §20.2 C (timed minutes in a single day), §20.2 D (per provider, "
    "discipline, date of service and patient)",
    _CH5,
)
TREATMENT_NOTE = Reference("Pub 100-02 ch.15 §220.3 E", _CH15)
SPLIT_BLOCKS = Reference("NCCI Policy Manual ch.1 §E (timed services in split blocks)")
CPT_TIME_RULE = Reference(
    "CPT time rule: a unit is reached once the midpoint is passed",
    "https://www.premera.com/wa/provider/news/reminders-updates/billing-for-time/",
)
ADDON_CODES = Reference("CPT descriptors: initial and each-additional code pairs")

_NCCI = (
    "https://www.cms.gov/medicare/coding-billing/national-correct-coding-initiative-ncci-edits/"
    "medicare-ncci-policy-manual"
)
# Where a cited source can be read, by how its citation begins.
_LINKS = (
    ("CMS Pub 100-04", _CH5),
    ("Pub 100-04", _CH5),
    ("Pub 100-02", _CH15),
    ("NCCI", _NCCI),
    ("CPT time rule", CPT_TIME_RULE.href),
)


def link_for(citation: str) -> str | None:
    """The public page a citation points to, when it names a source we link."""
    for prefix, href in _LINKS:
        if citation.startswith(prefix):
            return href
    return None
