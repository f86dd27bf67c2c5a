"""Errors of the command line and the service that map to an exit status or an HTTP answer."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input for a command: exit status 2 with this one-line message."""
