"""The `theracharge` command line: units, process, sample, demo."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
from marshmallow import ValidationError

from fhir_mappings.bundle_io import InputError, atomic_output
from plugin.commands import background
from plugin.commands.process_ehr import run_live
from plugin.commands.progress import Progress
from plugin.config.files import Settings, load_settings
from plugin.errors import BadRequest, Invalid, UsageError, describe
from plugin.pipeline.files import MIN_VISITS_PER_JOB, OfflineOutputs, process_file
from plugin.render.report import summary_text
from plugin.render.units_report import units_json, units_text
from plugin.rules.units import decide_units
from plugin.sample import SHAPES, SampleSpec, as_transaction, generate, us_core
from plugin.schemas.errors import ConfigError, field_errors
from plugin.schemas.units_request import parse_units_request

EXIT_FAILED = 1  # some visits could not be processed; the others were
EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 128 + 13  # killed by SIGPIPE, as the shell reports it


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        result: int = args.run(args, settings)
        sys.stdout.flush()  # here, where a reader that went away is caught
        return result
    except (BadRequest, Invalid, ConfigError) as exc:  # bad input or table: named, status 2
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader stopped reading (`theracharge examples | head`): stop quietly, as Unix
        # tools do, with SIGPIPE's status; stdout goes to /dev/null so the interpreter's own
        # final flush does not fail again (Python docs, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


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
    examples = commands.add_parser("examples", help="worked examples of the unit rules")
    examples.set_defaults(run=_run_examples)
    demo = commands.add_parser("demo", help="the whole product against a sandbox EHR")
    demo.add_argument("--once", action="store_true", help="stop after the report")
    demo.add_argument("--sekmet", default=".ehr-venv/bin/sekmet", help="the sandbox EHR's command")
    demo.add_argument("--visits", type=_positive, default=16, help="visits in the clinic day")
    demo.add_argument("--dir", default=".demo", help="working folder, made fresh each run")
    demo.add_argument(
        "--shape",
        choices=SHAPES,
        default="us-core",
        help="how the sandbox EHR holds the day (default: as a US Core 6.1 EHR writes it)",
    )
    demo.add_argument(
        "--outlet",
        choices=("fhir", "oracle-health", "hl7v2"),
        default="fhir",
        help="where the charges go: ChargeItems in the EHR (default), Oracle Health's ChargeItem "
        "operations (a stand-in for Millennium's in front of the EHR), or DFT^P03 messages over "
        "MLLP to a stand-in billing system",
    )
    demo.set_defaults(run=_run_demo)
    _process_parser(commands)
    _sample_parser(commands)
    _vocabulary_parser(commands)
    _service_parsers(commands)
    background.add_parsers(commands)
    return parser


def _service_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the HTTP service (gunicorn; --dev: Flask)",
        description="Run the HTTP service under gunicorn (sync workers). At start it says what "
        "is not configured yet (API tokens, CDS issuers, notification secret, public URL, EHR).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_positive, default=8000, help="port to listen on")
    serve.add_argument("--workers", type=_positive, default=2, help="gunicorn worker processes")
    serve.add_argument("--dev", action="store_true", help="Flask's development server")
    serve.set_defaults(run=_run_serve)
    subscribe = commands.add_parser("subscribe", help="create the EHR Subscription to notify us")
    subscribe.add_argument("--fhir-base", metavar="URL", help="default THERACHARGE_FHIR_BASE_URL")
    subscribe.add_argument(
        "--endpoint",
        required=True,
        metavar="URL",
        help="our notification URL, e.g. https://tc.example.org/notifications/fhir",
    )
    subscribe.set_defaults(run=_run_subscribe)
    token = commands.add_parser("token-hash", help="the THERACHARGE_API_TOKENS entry of a token")
    token.add_argument("name", help="who uses the token, e.g. billing-batch")
    token.set_defaults(run=_run_token_hash)
    imports = commands.add_parser(
        "import",
        help="load CMS's quarterly NCCI file, or a fee schedule, as a new version of its table",
        description="ncci-ptp: the practitioner PTP files (ccipra-v###r0-f1 … f4, tab-delimited; "
        "all parts at once: the import replaces the table); ncci-mue: the practitioner MUE file "
        "(MCR_MUE_PractitionerServices_Eff_MM-DD-YYYY.csv); fee-schedule: a CSV of allowed "
        "amounts (a code and an amount column) in force from --effective. Rows of the catalog's "
        "codes are kept, stored in THERACHARGE_DATABASE_URL with who, when and why, and audited.",
    )
    imports.add_argument("table", choices=["ncci-ptp", "ncci-mue", "fee-schedule"])
    imports.add_argument(
        "files", nargs="+", metavar="FILE", help="the CMS file (ncci-ptp: every part, f1 … f4)"
    )
    imports.add_argument("--reason", required=True, help="why (kept with the version)")
    imports.add_argument(
        "--effective",
        type=_iso_date,
        help="the MUE file's effective date (default: its name); the fee schedule's (required)",
    )
    imports.add_argument("--source", default="", help="fee-schedule: where the amounts come from")
    imports.set_defaults(run=_run_import)


def _run_import(args: argparse.Namespace, settings: Settings) -> int:
    """`theracharge import ncci-ptp|ncci-mue FILE --reason …`: a new version, audited."""
    import getpass

    from plugin.config.edits import import_ncci
    from plugin.store import Store

    paths = [Path(f) for f in args.files]
    if args.table == "fee-schedule" and (len(paths) > 1 or args.effective is None):
        raise UsageError("import fee-schedule: one CSV file and --effective YYYY-MM-DD")
    if args.table == "ncci-mue" and len(paths) > 1:
        raise UsageError("import ncci-mue: one MUE file at a time (each has its own date)")
    texts = []
    progress = Progress(len(paths), "files read")  # CMS's PTP parts are tens of MB each
    for path in paths:
        try:
            texts.append(path.read_text(encoding="utf-8-sig", errors="replace"))
        except OSError as exc:
            raise UsageError(f"{path}: cannot read ({exc.strerror})") from exc
        progress.step()
    progress.done()
    text = "\n".join(texts)
    name = " + ".join(p.name for p in paths)
    store = Store(settings.service.database_url)
    store.migrate()
    table = args.table.removeprefix("ncci-")
    author = f"cli:{getpass.getuser()}"
    if table == "fee-schedule":
        from plugin.config.edits import import_fee_schedule

        version, codes = import_fee_schedule(
            store, settings, text, name, args.effective, args.source, author, args.reason
        )
        print(f"fees version {version}: {codes} codes from {name}, in force from {args.effective}")
        return 0
    version, rows = import_ncci(
        store, settings, table, text, name, author, args.reason, args.effective
    )
    print(f"ncci/{table} version {version}: {rows} rows of the catalog's codes from {name}")
    return 0


def _run_serve(args: argparse.Namespace, settings: Settings) -> int:
    if not args.dev:
        _metrics_folder(settings, args.host, args.port)
    # Imported only now: the metrics must know their folder before the first one is made.
    from plugin.web.observability import configure_logging
    from plugin.web.server import serve

    configure_logging()
    serve(settings, args.host, args.port, args.workers, args.dev)
    return 0


def _metrics_folder(settings: Settings, host: str, port: int) -> None:
    """Counters shared by every gunicorn worker of this instance (prometheus_client's
    multiprocess mode: each worker writes its own file, /metrics adds them up). The folder is
    this instance's own (its address), emptied at start so a past run's counts do not linger;
    PROMETHEUS_MULTIPROC_DIR set by the operator is used as it is."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = Path(settings.service.instance_dir) / "metrics" / f"{host}-{port}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def _run_subscribe(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_mappings.subscription import subscription
    from plugin.gateway.errors import FhirError
    from plugin.gateway.factory import connect

    secret = settings.service.notification_secret
    if not secret:
        raise UsageError("THERACHARGE_NOTIFICATION_SECRET: set it first; the EHR must send it")
    try:
        client = connect(settings.fhir, args.fhir_base)
        body = subscription(args.endpoint, settings.service.notification_header, secret)
        created = client.create("Subscription", body)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except FhirError as exc:
        print(f"creating the Subscription failed: {exc}", file=sys.stderr)
        return 1
    print(f"Subscription/{created.get('id')} created: {created.get('status')}")
    return 0


def _run_token_hash(args: argparse.Namespace, settings: Settings) -> int:
    from plugin.config.tokens import token_hash

    print("Type the token, then Enter:", file=sys.stderr)
    token = sys.stdin.readline().strip()
    if not token:
        raise UsageError("token-hash: no token given on stdin")
    print(f"{args.name}=sha256:{token_hash(token)}")
    return 0


def _process_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    process = commands.add_parser(
        "process",
        help="decide the charges of FHIR visits and write ChargeItems",
        description="Decide the charges of FHIR visits: from a Bundle or NDJSON file (writing a "
        "transaction Bundle and a report), or from the EHR (writing ChargeItems back).",
    )
    source = process.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", metavar="FILE", help="Bundle or NDJSON file; - = stdin")
    source.add_argument("--encounter", metavar="ID", help="one encounter on the EHR")
    source.add_argument("--since", type=_iso_date, metavar="DATE", help="EHR encounters from DATE")
    process.add_argument("--until", type=_iso_date, metavar="DATE", help="… to DATE (--since)")
    process.add_argument("--fhir-base", metavar="URL", help="default THERACHARGE_FHIR_BASE_URL")
    process.add_argument("--dry-run", action="store_true", help="print what would be written")
    process.add_argument(
        "--out", metavar="FILE", help="write the transaction Bundle here (- = stdout)"
    )
    process.add_argument("--report", metavar="FILE", help="write the JSON report here (- = stdout)")
    process.add_argument(
        "--format",
        choices=["json", "text"],
        default="json",
        help="text: also print a readable summary per visit to stderr",
    )
    process.add_argument(
        "--strict", action="store_true", help="validate every resource against the R4B models"
    )
    process.add_argument(
        "--jobs",
        type=_jobs,
        metavar="N",
        help="--bundle: decide in up to N processes, each patient's days in one (default: the "
        f"cores this process may use, {_cores()}; files under {MIN_VISITS_PER_JOB} encounters "
        "a process take fewer). --since: run N billing days at a time, each on its own EHR "
        "connection (default THERACHARGE_FHIR_CONCURRENCY)",
    )
    process.set_defaults(run=_run_process)


def _sample_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sample = commands.add_parser("sample", help="generate synthetic therapy visits as FHIR")
    sample.add_argument("--visits", type=_non_negative, default=20)
    sample.add_argument("--seed", type=int, default=1)
    sample.add_argument("--date", type=_iso_date, default=date(2026, 11, 2), help="first day")
    sample.add_argument("--days", type=_positive, default=1, help="spread visits over N days")
    sample.add_argument(
        "--problem-rate", type=_rate, default=0.25, help="share of visits with a problem"
    )
    sample.add_argument(
        "--second-visits",
        type=_rate,
        default=0.0,
        help="share of patients seen again that afternoon (one billing day, two encounters)",
    )
    sample.add_argument(
        "--shape",
        choices=SHAPES,
        default="theracharge",
        help="us-core: roles in PractitionerRole.specialty/code and certification as a signed "
        "plan DocumentReference + Provenance, as a US Core 6.1 EHR writes them",
    )
    sample.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="*.ndjson writes NDJSON, anything else a transaction Bundle; - = stdout (Bundle)",
    )
    sample.set_defaults(run=_run_sample)


def _vocabulary_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vocabulary = commands.add_parser(
        "vocabulary",
        help="check the documentation vocabulary (config/rules/activities.yaml) on labelled notes",
        description="evaluate: read and check each note of a labelled corpus as a decision "
        "reads a service's note, and print, for the whole corpus, each set (the held-out part "
        "apart) and each charting style: the code-choice review's precision, recall and "
        "false-alarm rate, and the precision of skill-not-shown and measures-missing, against "
        "their targets. The vocabulary in force is used: the admin's stored version "
        "(THERACHARGE_DATABASE_URL), else the file. --draft FILE evaluates a vocabulary not yet "
        "saved beside it and lists the notes it reads otherwise.",
    )
    vocabulary.add_argument("action", choices=["evaluate"])
    vocabulary.add_argument(
        "corpus", metavar="PATH", help="a corpus file or a directory of them, e.g. tests/corpus/"
    )
    vocabulary.add_argument("--format", choices=["text", "json"], default="text")
    vocabulary.add_argument(
        "--draft",
        metavar="FILE",
        help="a vocabulary to try before saving it (YAML or JSON: the shape of "
        "config/rules/activities.yaml, or the body of PUT /admin/api/v1/vocabulary)",
    )
    vocabulary.set_defaults(run=_run_vocabulary)


def _run_vocabulary(args: argparse.Namespace, settings: Settings) -> int:
    from plugin.commands.vocabulary import (
        changes,
        evaluate_sets,
        evaluation_text,
        load_corpus,
        load_draft,
    )
    from plugin.config.effective import effective_settings

    notes = load_corpus(Path(args.corpus))
    draft = load_draft(Path(args.draft)) if args.draft else None
    results = evaluate_sets(notes, effective_settings(settings).vocabulary)
    tried = evaluate_sets(notes, draft) if draft is not None else None
    if args.format == "json":
        body: dict[str, Any] = {name: result.as_json() for name, result in results.items()}
        if tried is not None:
            body = {
                "in_force": body,
                "draft": {name: result.as_json() for name, result in tried.items()},
                "changed": changes(results["all"], tried["all"]),
            }
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif tried is None:
        sys.stdout.write(evaluation_text(results, args.corpus))
    else:
        changed = changes(results["all"], tried["all"])
        sys.stdout.write(
            "The vocabulary in force\n"
            + evaluation_text(results, args.corpus)
            + f"\nThe draft {args.draft}\n"
            + evaluation_text(tried, args.corpus)
            + f"\nNotes the draft reads otherwise ({len(changed)}):\n"
            + "".join(f"  {line}\n" for line in changed)
        )
    return 0


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _cores() -> int:
    """The cores this process may run on (its affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _jobs(text: str) -> int:
    """--jobs: 1 to 64 (processes for a file, days at a time against the EHR)."""
    value = _positive(text)
    if value > 64:
        raise argparse.ArgumentTypeError("at most 64")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected YYYY-MM-DD") from exc


def _run_process(args: argparse.Namespace, settings: Settings) -> int:
    if args.bundle is None:
        return run_live(args, settings)
    if args.dry_run or args.until or args.fhir_base:
        raise UsageError("--dry-run, --until and --fhir-base go with --encounter or --since")
    if "-" in (args.out, args.report) and args.out == args.report:
        raise UsageError("--out and --report cannot both be standard output")
    entered = datetime.now().astimezone().replace(microsecond=0)
    try:
        with atomic_output(args.out) as out, atomic_output(args.report) as report:
            text = sys.stderr if args.format == "text" else None
            outputs = OfflineOutputs(bundle=out, report=report, text=text)
            summary = process_file(
                args.bundle,
                settings,
                outputs,
                entered,
                strict=args.strict,
                jobs=args.jobs or _cores(),
            )
    except InputError as exc:
        raise UsageError(str(exc)) from exc
    except BrokenPipeError:
        raise
    except OSError as exc:  # an output that cannot be written: name it
        raise UsageError(f"{exc.filename or args.out}: {exc.strerror or exc}") from exc
    if args.format == "text":
        print(summary_text(summary), file=sys.stderr)
    for failure in summary.failures:  # the others were decided and written
        print(f"not processed: {failure}", file=sys.stderr)
    return EXIT_FAILED if summary.failures else 0


def _run_sample(args: argparse.Namespace, settings: Settings) -> int:
    spec = SampleSpec(
        args.visits, args.seed, args.date, args.problem_rate, args.days, args.second_visits
    )
    resources = generate(spec)
    if args.shape == "us-core":
        resources = us_core(resources)
    with atomic_output(args.out) as handle:
        if handle is None:  # argparse requires --out; kept for the type checker
            raise UsageError("sample: --out is required")
        if args.out.endswith(".ndjson"):
            for resource in resources:
                handle.write(orjson.dumps(resource) + b"\n")
        else:
            handle.write(orjson.dumps(as_transaction(resources)) + b"\n")
    return 0


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
        on=request.date_of_service or date.today(),  # no date given: the rules in force today
        tie_break=request.tie_break,
    )
    return {"json": units_json(result), "text": units_text(result)}


def _run_units(args: argparse.Namespace, settings: Settings) -> int:
    raw = _read_json(args.file, sys.stdin)
    try:
        rendered = units_for_request(raw, settings)
    except ValidationError as exc:
        raise UsageError(describe(field_errors(exc.messages))) from exc
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
    from plugin.commands.demo import run

    root = Path(args.dir).resolve()
    return run(
        root,
        root.parent / f"{root.name}-keys",
        str(Path(args.sekmet).resolve()),
        args.once,
        args.visits,
        args.shape,
        args.outlet,
    )


def _run_examples(args: argparse.Namespace, settings: Settings) -> int:
    for title, request in DEMO_VISITS:
        rendered = units_for_request(request, settings)
        sys.stdout.write(f"\n=== {title}\n$ theracharge units --format text <<< '")
        sys.stdout.write(orjson.dumps(request).decode() + "'\n")
        sys.stdout.write(str(rendered["text"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
