"""CMS's quarterly NCCI files as the rows of config/ncci/: the practitioner PTP text files
(`ccipra-v###r0-f1…f4`, tab-delimited) and the practitioner MUE file
(`MCR_MUE_PractitionerServices_Eff_MM-DD-YYYY.csv`).

Both files open with AMA copyright lines and headers over several lines; a data row is one
whose first fields are HCPCS/CPT codes. Only rows for codes in the catalog (both codes, for a
PTP pair) are kept: the therapy codes TheraCharge bills.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection
from datetime import date, datetime

_CODE = re.compile(r"^[A-Z0-9]\d{3}[A-Z0-9]$")
_EFFECTIVE_IN_NAME = re.compile(r"Eff_(\d{2})-(\d{2})-(\d{4})", re.IGNORECASE)


class NcciFileError(ValueError):
    """A file that is not the CMS layout; the message names the line."""


def ptp_rows(text: str, codes: Collection[str], source: str) -> list[dict[str, str]]:
    """The PTP pairs among `codes`: column1, column2, effective, deletion, modifier_indicator.

    CMS columns: Column 1, Column 2, "*" (in existence before 1996), effective date
    (YYYYMMDD), deletion date (YYYYMMDD, or "*" for none), modifier indicator (0, 1, 9), and
    the edit's rationale.
    """
    rows: list[dict[str, str]] = []
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        fields = [f.strip().strip('"') for f in re.split(r"\t|,", line)]
        if len(fields) < 6 or not (_CODE.match(fields[0]) and _CODE.match(fields[1])):
            continue  # a copyright or header line
        seen += 1
        column1, column2, _, effective, deletion, indicator = fields[:6]
        if indicator not in ("0", "1", "9"):
            raise NcciFileError(f"line {number}: modifier indicator {indicator!r} is not 0, 1 or 9")
        if column1 not in codes or column2 not in codes:
            continue
        rows.append(
            {
                "column1": column1,
                "column2": column2,
                "effective": _iso(effective, number),
                "deletion": "*" if deletion in ("", "*") else _iso(deletion, number),
                "modifier_indicator": indicator,
                "source": source,
            }
        )
    if not seen:
        raise NcciFileError("no PTP rows: expected tab-delimited Column 1, Column 2 … rows")
    return rows


def mue_rows(
    text: str, codes: Collection[str], source: str, effective: date | None = None
) -> list[dict[str, str]]:
    """The MUEs of `codes`: code, mue, mai, rationale, effective (from the file name unless
    given). CMS columns: HCPCS/CPT code, MUE value, adjudication indicator ("3 Date of Service
    Edit: Clinical"), rationale."""
    when = effective or _effective_from_name(source)
    if when is None:
        raise NcciFileError(
            "the MUE file's effective date: name it MCR_MUE_…_Eff_MM-DD-YYYY.csv or give it"
        )
    rows: list[dict[str, str]] = []
    seen = 0
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # a stray carriage return, an unclosed quote: named, not a 500
        raise NcciFileError(f"the MUE file is not readable as CSV ({exc})") from exc
    for number, fields in enumerate(lines, start=1):
        cells = [f.strip() for f in fields]
        if len(cells) < 3 or not _CODE.match(cells[0]) or not cells[1].isdigit():
            continue
        seen += 1
        mai = cells[2][:1]
        if mai not in ("1", "2", "3"):
            raise NcciFileError(f"line {number}: adjudication indicator {cells[2]!r}")
        if cells[0] in codes:
            rationale = cells[3] if len(cells) > 3 else ""
            rows.append(
                {
                    "code": cells[0],
                    "mue": cells[1],
                    "mai": mai,
                    "rationale": rationale,
                    "effective": when.isoformat(),
                    "source": source,
                }
            )
    if not seen:
        raise NcciFileError("no MUE rows: expected HCPCS/CPT code, MUE value, MAI … rows")
    return rows


def _iso(value: str, number: int) -> str:
    if not value:
        return ""
    for layout in ("%Y%m%d", "%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(value, layout).date().isoformat()
        except ValueError:
            continue
    raise NcciFileError(f"line {number}: {value!r} is not a date")


def _effective_from_name(name: str) -> date | None:
    match = _EFFECTIVE_IN_NAME.search(name)
    if not match:
        return None
    month, day, year = (int(g) for g in match.groups())
    return date(year, month, day)
