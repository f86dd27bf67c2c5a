"""Marshmallow schemas: one per table or request, shared by file loaders and APIs."""
