"""Marshmallow's nested error dicts as flat `path: message` strings a person can act on."""

from __future__ import annotations

from collections.abc import Mapping


def flatten_errors(messages: object, prefix: str = "") -> list[str]:
    """`{"services": {2: {"code": ["bad"]}}}` → `["services[2].code: bad"]`."""
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key == "_schema":
                path = prefix
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_errors(value, path))
        return out
    if isinstance(messages, list | tuple):
        out = []
        for item in messages:
            out.extend(flatten_errors(item, prefix))
        return out
    where = prefix or "input"
    return [f"{where}: {messages}"]


class ConfigError(Exception):
    """A configuration file or table failed validation; the message names file and field."""
