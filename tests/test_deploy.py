"""deploy/compose.yaml describes the layout the whole-layout test starts
(tests/reliability/test_layout.py): the same processes, the same settings."""

from __future__ import annotations

from pathlib import Path

import yaml

from plugin.commands.main import _parser
from tests.helpers.stack import SERVICES, layout_env

ROOT = Path(__file__).resolve().parents[1]
TEST_TIMINGS = {"THERACHARGE_FHIR_READ_TIMEOUT", "THERACHARGE_FHIR_RETRY_SECONDS"}
PER_INSTANCE = {"THERACHARGE_PUBLIC_URL"}  # tests/service.py sets each instance's own


def _compose() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))


def test_the_compose_file_runs_the_processes_the_layout_test_starts() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis"} <= set(services)
    ours = {
        name: s["command"]
        for name, s in services.items()
        if s.get("command", [""])[0] == "theracharge"
    }
    assert {name: command[1] for name, command in ours.items()} == SERVICES
    for command in ours.values():  # each command is one our command line accepts
        args = _parser().parse_args(command[1:])
        assert args.run is not None
    assert services["redis"]["image"].startswith("redis:")
    assert services["postgres"]["image"].startswith("postgres:")


def test_the_compose_file_sets_what_the_layout_test_sets() -> None:
    services = _compose()["services"]
    tested = set(layout_env("db", "redis://x", "http://ehr", Path("j"))) - TEST_TIMINGS
    for name in SERVICES:
        described = set(services[name]["environment"])
        assert tested <= described, (name, tested - described)
        assert described - tested <= PER_INSTANCE, (name, described - tested)
        url = services[name]["environment"]["THERACHARGE_DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://")
        assert services[name]["environment"]["THERACHARGE_BROKER_URL"].startswith("redis://")
