"""A plain (non-editable) `pip install .` gives a working `theracharge` with its shipped config."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _install(target: Path, **env: str) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, **env},
    )
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `pip install .` gives on a machine with a C compiler: the core compiled."""
    return _install(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def without_compiler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `pip install .` gives on a machine whose C compiler fails (CC=/bin/false)."""
    return _install(tmp_path_factory.mktemp("pure"), CC="/bin/false")


def _modules(site: Path) -> list[str]:
    """Where the decision core's modules were imported from, in an installed tree."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import plugin.rules.units as u, plugin.rules.decision as d, "
            "fhir_mappings.assemble as a; print(u.__file__, d.__file__, a.__file__)",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=site.parent,
        check=True,
    )
    return done.stdout.split()


def _run(installed: Path, *args: str, stdin: str = "", extra_env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("THERACHARGE_")}
    env["PYTHONPATH"] = str(installed)  # ahead of the editable install of the checkout
    env.update(extra_env or {})
    return subprocess.run(
        [str(installed / "bin" / "theracharge"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=installed.parent,
        check=False,
    )


@pytest.mark.slow
def test_the_installed_command_finds_the_packaged_defaults(installed: Path) -> None:
    assert (installed / "plugin" / "_config" / "catalog.yaml").is_file()
    assert (installed / "plugin" / "_config" / "rules" / "units.yaml").is_file()
    probe = _run(
        installed,
        "units",
        stdin='{"services": [{"code": "97110", "minutes": 33}, {"code": "97140", "minutes": 7}]}',
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["total_timed_units"] == 3
    where = subprocess.run(
        [sys.executable, "-c", "import plugin.config.files as s; print(s.default_config_dir())"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(installed)},
        cwd=installed.parent,
        check=True,
    )
    assert where.stdout.strip() == str(installed / "plugin" / "_config")


@pytest.mark.slow
def test_the_installed_command_reads_a_site_config_dir(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "payers.yaml").write_text("default_method: medicaid\n")
    env = {"THERACHARGE_CONFIG_DIR": str(tmp_path)}
    probe = _run(installed, "units", stdin='{"services": []}', extra_env=env)
    assert probe.returncode == 2
    assert str(tmp_path / "payers.yaml") in probe.stderr
    assert "default_method" in probe.stderr


@pytest.mark.slow
def test_without_a_compiler_the_install_is_pure_python_and_works(without_compiler: Path) -> None:
    assert all(path.endswith(".py") for path in _modules(without_compiler))
    assert not list((without_compiler / "plugin" / "rules").glob("*.so"))
    probe = _run(
        without_compiler, "units", stdin='{"services": [{"code": "97110", "minutes": 38}]}'
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["total_timed_units"] == 3


# Tests that read the checkout's own sources or README (not in an installed tree), and this file
_NOT_FOR_AN_INSTALL = ["integration", "browser", "reliability"]
_NOT_FOR_AN_INSTALL_FILES = [
    "test_install.py",
    "test_layering.py",
    "test_readme_settings.py",
    "test_deploy.py",  # reads deploy/
]


@pytest.mark.slow
def test_the_compiled_core_passes_the_same_tests(installed: Path, tmp_path: Path) -> None:
    """CI tests both builds: the whole suite runs on the sources as plain Python; here the
    unit, case, golden, CLI and web tests run again on the installed wheel, whose core mypyc
    compiled (hatch_build.py)."""
    assert all(path.endswith(".so") for path in _modules(installed)), _modules(installed)
    shutil.copytree(
        ROOT / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    ignores = [f"--ignore=tests/{name}" for name in _NOT_FOR_AN_INSTALL]
    ignores += [f"--ignore=tests/{name}" for name in _NOT_FOR_AN_INSTALL_FILES]
    env = {k: v for k, v in os.environ.items() if not k.startswith("THERACHARGE_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", *ignores],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(installed)},
        cwd=tmp_path,
        check=False,
    )
    tail = "\n".join(done.stdout.splitlines()[-15:])
    assert done.returncode == 0, tail
    passed = re.search(r"(\d+) passed", tail)
    assert passed, tail
    assert int(passed.group(1)) >= 500, tail
