"""The layering of docs/architecture.md, checked on the import statements of every module.

rules imports the standard library only, and msgspec for its records (issue 19: `msgspec.Struct`,
`msgspec.field` and `msgspec.structs.replace`, nothing else of msgspec); fhir.resources is
imported only in fhir_mappings, and only its R4B models; Flask only in the web layer; requests
only in the gateway.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    return _imports_of(ast.parse(path.read_text(encoding="utf-8")))


def _imports_of(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


# What the core may use of msgspec: its record types (docs/architecture.md "Layers").
MSGSPEC_RECORDS = {"Struct", "field"}
# … and the copy of a record with some fields changed (what dataclasses.replace is to a dataclass)
MSGSPEC_RECORD_FUNCTIONS = {"msgspec.structs": {"replace"}}


def _rules_offences(source: str) -> set[str]:
    """What a module of plugin/rules imports or uses beyond the standard library, itself and
    msgspec's records."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "msgspec" and node.level == 0:
            found.update(f"msgspec.{a.name}" for a in node.names if a.name not in MSGSPEC_RECORDS)
        elif isinstance(node, ast.ImportFrom) and node.module in MSGSPEC_RECORD_FUNCTIONS:
            allowed = MSGSPEC_RECORD_FUNCTIONS[node.module]
            found.update(f"{node.module}.{a.name}" for a in node.names if a.name not in allowed)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "msgspec"
            and node.attr not in MSGSPEC_RECORDS
        ):
            found.add(f"msgspec.{node.attr}")
    for name in _imports_of(tree):
        top = name.split(".")[0]
        if top == "msgspec":
            if name != "msgspec" and name not in MSGSPEC_RECORD_FUNCTIONS:
                found.add(name)  # msgspec.json, msgspec.structs …: not records
        elif top not in sys.stdlib_module_names and not name.startswith("plugin.rules"):
            found.add(name)
    return found


def test_rules_import_the_standard_library_themselves_and_msgspec_records_only() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules("plugin/rules")
        for name in _rules_offences(path.read_text(encoding="utf-8"))
    }
    assert offenders == set()


def test_the_rules_may_define_msgspec_records_and_nothing_else_of_msgspec() -> None:
    records = (
        "import msgspec\nfrom msgspec import Struct, field\n"
        "class Line(msgspec.Struct, frozen=True):\n    code: str = msgspec.field(default='')\n"
        "class Unit(Struct, frozen=True, gc=False):\n    units: int\n"
    )
    assert _rules_offences(records) == set()
    assert _rules_offences("import msgspec\nmsgspec.json.decode(b'{}')\n") == {"msgspec.json"}
    assert _rules_offences("from msgspec import json\n") == {"msgspec.json"}
    assert _rules_offences("import msgspec.json\n") == {"msgspec.json"}
    assert _rules_offences("from msgspec.structs import replace\n") == set()
    assert _rules_offences("from msgspec.structs import asdict, replace\n") == {
        "msgspec.structs.asdict"
    }
    assert _rules_offences("import orjson\n") == {"orjson"}


def test_fhir_resources_only_in_fhir_mappings_and_only_r4b() -> None:
    offenders = set()
    for package in ("plugin", "fhir_mappings"):
        for path in _modules(package):
            for name in _imports(path):
                if not name.startswith("fhir.resources"):
                    continue
                if package != "fhir_mappings" or not name.startswith("fhir.resources.R4B"):
                    offenders.add(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == set()


def test_flask_only_in_the_web_layer_and_requests_only_in_the_gateway() -> None:
    # The demo plays the EHR: it calls our service over HTTP as an EHR would, and its
    # Millennium stand-in passes what is not a ChargeItem call on to the sandbox EHR.
    allowed = {
        "flask": ("plugin/web", "plugin/web/app.py"),
        "requests": (
            "plugin/gateway",
            "plugin/commands/demo.py",
            "plugin/commands/millennium_standin.py",
        ),
    }
    offenders = set()
    for package in ("plugin", "fhir_mappings"):
        for path in _modules(package):
            where = str(path.relative_to(ROOT))
            for name in _imports(path):
                top = name.split(".")[0]
                if top in allowed and not where.startswith(allowed[top]):
                    offenders.add(f"{where}: {name}")
    assert offenders == set()
