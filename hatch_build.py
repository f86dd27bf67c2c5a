"""Wheel build hook: compile the decision core with mypyc when the machine can, else ship it as
plain Python (docs/performance.md "A compiled core").

`pip install .` (a wheel) compiles the modules of `COMPILED` into C extensions beside their
sources; an extension is imported in place of its `.py`, which stays in the wheel. Nothing
else changes: the same code, the same behaviour, about 1.4–3× faster (bench/README.md).
When compiling is not possible — no C compiler, no Python headers, mypyc missing or failing —
the build says why and produces the pure-Python wheel, which works everywhere.
`THERACHARGE_COMPILE=0` asks for the pure-Python wheel; `THERACHARGE_COMPILE=1` makes a failure
to compile an error instead. An editable install (`pip install -e .`, what `make` uses for
development) is never compiled.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# The decision core: pure functions over small records, where mypyc pays. Left out:
# package __init__ files; plugin/rules/parameters.py (a generic dataclass, which mypyc cannot
# build as a native class; read once per decision); plugin/rules/records.py, the records' base,
# which carries the class keywords (frozen, gc) mypyc drops from a compiled class; bundle_io.py
# and strict.py, which import orjson and pydantic (not in the build's environment), I/O-bound.
PACKAGES = ("plugin/rules", "fhir_mappings")
LEFT_OUT = {"__init__.py", "parameters.py", "records.py", "bundle_io.py", "strict.py"}
# The modules compiled are checked as `make lint` checks them; what they import from outside
# the list (the runtime dependencies are not installed in a build environment) is read
# without reporting its errors.
MYPY_OPTIONS = ["--no-warn-unused-configs", "--follow-imports=silent"]


def compiled_sources(root: Path) -> list[str]:
    """The source files compiled, relative to the project root, in a stable order."""
    return sorted(
        str(path.relative_to(root))
        for package in PACKAGES
        for path in (root / package).glob("*.py")
        if path.name not in LEFT_OUT
    )


class CompiledCore(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        choice = os.environ.get("THERACHARGE_COMPILE", "auto")
        if self.target_name != "wheel" or version == "editable" or choice == "0":
            return
        root = Path(self.root)
        self._work = Path(tempfile.mkdtemp(prefix="theracharge-mypyc-"))
        try:
            built = _compile(root, self._work)
        # Any failure to compile leaves the pure-Python wheel; mypyc reports type errors and a
        # missing setuptools by exiting (SystemExit), which must not end the install either.
        except (Exception, SystemExit) as exc:
            if choice == "1":
                raise
            why = " ".join(str(exc).split())[:160] or "failed"
            self.app.display_warning(
                f"theracharge: building without the compiled core ({type(exc).__name__}: "
                f"{why}); it works the same, slower"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        for path, target in built:
            build_data["force_include"][str(path)] = target
        self.app.display_info(f"theracharge: compiled {len(built)} modules with mypyc")

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        work = getattr(self, "_work", None)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def _compile(root: Path, work: Path) -> list[tuple[Path, str]]:
    """Build the extensions in `work`; (built file, its path in the wheel) for each."""
    from mypyc.build import mypycify  # in the build requirements; absent → pure wheel
    from setuptools import Distribution

    sources = compiled_sources(root)
    here = Path.cwd()
    os.chdir(root)  # mypyc names modules by their path from the project root
    try:
        extensions = mypycify(
            [*MYPY_OPTIONS, *sources],
            opt_level="3",
            target_dir=str(work / "c"),
        )
        distribution = Distribution({"name": "theracharge-core", "ext_modules": extensions})
        command = distribution.get_command_obj("build_ext")
        command.build_lib = str(work / "lib")
        command.build_temp = str(work / "tmp")
        command.ensure_finalized()
        command.run()
    finally:
        os.chdir(here)
    lib = work / "lib"
    built = [(path, str(path.relative_to(lib))) for path in lib.rglob("*.so")]
    built += [(path, str(path.relative_to(lib))) for path in lib.rglob("*.pyd")]
    if len(built) < len(sources):
        raise RuntimeError(f"mypyc built {len(built)} extensions for {len(sources)} modules")
    return built
