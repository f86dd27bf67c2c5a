"""The layering of docs/architecture.md, checked on the import statements of every module.

rules imports the standard library only; fhir.resources is imported only in fhir_mappings, and
only its R4B models; Flask only in the web layer; requests only in the gateway.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_rules_import_the_standard_library_and_themselves_only() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules("plugin/rules")
        for name in _imports(path)
        if name.split(".")[0] not in sys.stdlib_module_names and not name.startswith("plugin.rules")
    }
    assert offenders == set()


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
    # The demo plays the EHR: it calls our service over HTTP as an EHR would.
    allowed = {
        "flask": ("plugin/web", "plugin/web/app.py"),
        "requests": ("plugin/gateway", "plugin/commands/demo.py"),
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
