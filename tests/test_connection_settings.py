"""THERACHARGE_FHIR_* and THERACHARGE_SMART_* settings: validated at start, errors named."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin.config.files import load_settings
from plugin.gateway.auth import BearerAuth, NoAuth, SmartBackendAuth
from plugin.gateway.factory import connect
from plugin.schemas.errors import ConfigError
from tests.ehr import copy_key_pair


def test_defaults_need_no_ehr() -> None:
    fhir = load_settings({}).fhir
    assert fhir.base_url is None
    assert (fhir.connect_timeout, fhir.read_timeout, fhir.page_cap) == (5.0, 30.0, 50)
    with pytest.raises(ValueError, match="THERACHARGE_FHIR_BASE_URL"):
        connect(fhir)


def test_a_static_token_or_none(tmp_path: Path) -> None:
    plain = connect(
        load_settings({"THERACHARGE_FHIR_BASE_URL": "https://ehr.example.org/fhir/"}).fhir
    )
    assert isinstance(plain.auth, NoAuth)
    assert plain.base_url == "https://ehr.example.org/fhir"
    env = {
        "THERACHARGE_FHIR_BASE_URL": "https://ehr.example.org/fhir",
        "THERACHARGE_FHIR_TOKEN": "abc",
    }
    assert isinstance(connect(load_settings(env).fhir).auth, BearerAuth)
    assert "abc" not in repr(load_settings(env).fhir)


def test_smart_settings_build_a_smart_client(tmp_path: Path) -> None:
    key, _ = copy_key_pair(tmp_path)
    env = {
        "THERACHARGE_FHIR_BASE_URL": "https://ehr.example.org/fhir",
        "THERACHARGE_SMART_CLIENT_ID": "tc",
        "THERACHARGE_SMART_PRIVATE_KEY": str(key),
        "THERACHARGE_SMART_KID": "k1",
        "THERACHARGE_SMART_SCOPES": "system/ChargeItem.write",
    }
    client = connect(load_settings(env).fhir)
    assert isinstance(client.auth, SmartBackendAuth)
    assert client.auth.scopes == "system/ChargeItem.write"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"THERACHARGE_FHIR_BASE_URL": "ehr.example.org"},
            "THERACHARGE_FHIR_BASE_URL: 'ehr.example.org' is not",
        ),
        (
            {"THERACHARGE_SMART_CLIENT_ID": "tc"},
            "THERACHARGE_SMART_PRIVATE_KEY, THERACHARGE_SMART_KID: needed",
        ),
        (
            {
                "THERACHARGE_SMART_CLIENT_ID": "tc",
                "THERACHARGE_SMART_PRIVATE_KEY": "/nowhere.pem",
                "THERACHARGE_SMART_KID": "k",
            },
            "THERACHARGE_SMART_PRIVATE_KEY: /nowhere.pem is not a file",
        ),
        (
            {"THERACHARGE_FHIR_READ_TIMEOUT": "soon"},
            "THERACHARGE_FHIR_READ_TIMEOUT: 'soon' is not a number",
        ),
        ({"THERACHARGE_FHIR_PAGE_CAP": "0"}, "THERACHARGE_FHIR_PAGE_CAP: must be more than 0"),
        (
            {"THERACHARGE_FHIR_CONCURRENCY": "0"},
            "THERACHARGE_FHIR_CONCURRENCY: '0' is not a whole number from 1 to 64",
        ),
        (
            {"THERACHARGE_FHIR_CONCURRENCY": "2.5"},
            "THERACHARGE_FHIR_CONCURRENCY: '2.5' is not a whole number from 1 to 64",
        ),
    ],
)
def test_bad_connection_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert message in str(error.value)


def test_concurrency_defaults_to_four_and_is_read() -> None:
    assert load_settings({}).fhir.concurrency == 4
    assert load_settings({"THERACHARGE_FHIR_CONCURRENCY": "12"}).fhir.concurrency == 12


def test_a_token_and_smart_together_are_refused(tmp_path: Path) -> None:
    key, _ = copy_key_pair(tmp_path)
    env = {
        "THERACHARGE_FHIR_TOKEN": "t",
        "THERACHARGE_SMART_CLIENT_ID": "tc",
        "THERACHARGE_SMART_PRIVATE_KEY": str(key),
        "THERACHARGE_SMART_KID": "k",
    }
    with pytest.raises(ConfigError, match="not both"):
        load_settings(env)
