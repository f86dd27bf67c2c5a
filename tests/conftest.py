"""Shared fixtures: the shipped settings, loaded once."""

from __future__ import annotations

import pytest

from plugin.settings import Settings, load_settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings({})
