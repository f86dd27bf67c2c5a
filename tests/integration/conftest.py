"""A fresh sandbox EHR per test (sekmet-fhir, about 2 s to start), loaded with sample visits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from plugin.config.files import Settings, load_settings
from plugin.gateway.factory import connect
from plugin.gateway.gather import Gatherer
from tests.ehr import Ehr, load_sample, running_ehr

ENTERED = datetime(2026, 11, 2, 19, 0, tzinfo=timezone(timedelta(hours=-5)))


@pytest.fixture
def ehr(tmp_path: Path) -> Iterator[Ehr]:
    with running_ehr(tmp_path / "ehr") as server:
        load_sample(server, visits=8, seed=21, problem_rate=0.0)
        yield server


@pytest.fixture
def live_settings(ehr: Ehr) -> Settings:
    return load_settings(
        {"THERACHARGE_FHIR_BASE_URL": ehr.base_url, "THERACHARGE_FHIR_RETRY_SECONDS": "2"}
    )


@pytest.fixture
def gatherer(live_settings: Settings) -> Gatherer:
    return Gatherer(connect(live_settings.fhir))
