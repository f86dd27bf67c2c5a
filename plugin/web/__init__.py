"""Thin Flask blueprints: parse and validate the request, call the service, shape the answer."""
