"""The `theracharge` command line: units, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

import orjson
from marshmallow import ValidationError

from plugin.rules.units import decide_units
from plugin.schemas.errors import ConfigError, flatten_errors
from plugin.schemas.units_request import parse_units_request
from plugin.settings import Settings, load_settings
from plugin.units_report import units_json, units_text

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input for a command: exit status 2 with this one-line message."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        result: int = args.run(args, settings)
        return result
    except (UsageError, ConfigError) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="theracharge", description="Therapy charge capture: minutes to units to ChargeItems."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    units = commands.add_parser(
        "units",
        help="billable units for a list of services (JSON in, JSON out)",
        description="Read {method, services:[{code, minutes}]} JSON and print the units.",
    )
    units.add_argument("file", nargs="?", default="-", help="JSON file, or - for stdin (default)")
    units.add_argument("--format", choices=["json", "text"], default="json")
    units.set_defaults(run=_run_units)
    demo = commands.add_parser("demo", help="worked examples of the unit rules")
    demo.set_defaults(run=_run_demo)
    return parser


def _read_json(path: str, stdin: TextIO) -> object:
    try:
        if path == "-":
            text = stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        where = "input" if path == "-" else path
        raise UsageError(f"{where}: not valid JSON ({exc})") from exc


def units_for_request(raw: object, settings: Settings) -> dict[str, object]:
    """Validate a units request and decide it; ValidationError names the bad fields."""
    request = parse_units_request(raw, settings.catalog)
    result = decide_units(
        request.services,
        settings.catalog,
        settings.unit_parameters,
        method=request.method,
        on=request.date_of_service,
        tie_break=request.tie_break,
    )
    return {"json": units_json(result), "text": units_text(result)}


def _run_units(args: argparse.Namespace, settings: Settings) -> int:
    raw = _read_json(args.file, sys.stdin)
    try:
        rendered = units_for_request(raw, settings)
    except ValidationError as exc:
        raise UsageError("; ".join(flatten_errors(exc.messages))) from exc
    except LookupError as exc:  # a date of service before any dated rule value
        raise UsageError(f"date_of_service: {exc}") from exc
    if args.format == "text":
        sys.stdout.write(str(rendered["text"]))
    else:
        sys.stdout.write(orjson.dumps(rendered["json"], option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    return 0


DEMO_VISITS = [
    (
        "CMS Example 1: 24 minutes of 97112 and 23 of 97110 make 47 timed minutes, 3 units",
        {
            "method": "cms",
            "services": [{"code": "97112", "minutes": 24}, {"code": "97110", "minutes": 23}],
        },
    ),
    (
        "CMS Example 3: the 7-minute 97140 beats the 3 minutes left over of 97110",
        {
            "method": "cms",
            "services": [{"code": "97110", "minutes": 33}, {"code": "97140", "minutes": 7}],
        },
    ),
    (
        "The same visit under the AMA per-code rule: 97140's 7 minutes earn nothing",
        {
            "method": "ama",
            "services": [{"code": "97110", "minutes": 33}, {"code": "97140", "minutes": 7}],
        },
    ),
    (
        "A PT evaluation with exercise, and an OT session the same day, counted apart",
        {
            "method": "cms",
            "services": [
                {"code": "97161", "minutes": 30},
                {"code": "97110", "minutes": 22},
                {"code": "97140", "minutes": 7},
                {"code": "97535", "minutes": 25, "discipline": "OT"},
            ],
        },
    ),
]


def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    for title, request in DEMO_VISITS:
        rendered = units_for_request(request, settings)
        sys.stdout.write(f"\n=== {title}\n$ theracharge units --format text <<< '")
        sys.stdout.write(orjson.dumps(request).decode() + "'\n")
        sys.stdout.write(str(rendered["text"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
