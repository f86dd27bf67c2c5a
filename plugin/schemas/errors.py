"""Marshmallow's nested error dicts as (path, message) pairs a person can act on."""

from __future__ import annotations

from collections.abc import Mapping

from plugin.errors import Field, TheraChargeError


def field_errors(messages: object, prefix: str = "") -> list[Field]:
    """`{"services": {2: {"code": ["bad"]}}}` → `[("services[2].code", "bad")]`."""
    if isinstance(messages, Mapping):
        out: list[Field] = []
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key == "_schema":
                path = prefix
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(field_errors(value, path))
        return out
    if isinstance(messages, list | tuple):
        out = []
        for item in messages:
            out.extend(field_errors(item, prefix))
        return out
    return [(prefix or "input", str(messages))]


class ConfigError(TheraChargeError):
    """A configuration file or table failed validation; the message names file and field (the
    service does not start; the command line exits with status 2)."""

    code = "config-invalid"
