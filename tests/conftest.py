"""Shared fixtures: the shipped settings, loaded once."""

from __future__ import annotations

import pytest

from plugin.settings import Settings, load_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-golden",
        action="store_true",
        help="rewrite tests/golden/* from the current outputs (then review the diff)",
    )


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings({})
