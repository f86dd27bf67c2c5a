"""A plain (non-editable) `pip install .` gives a working `theracharge` with its shipped config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
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
    )
    return target


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
