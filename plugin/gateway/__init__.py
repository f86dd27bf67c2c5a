"""The only code that talks HTTP to the EHR: auth, retries, paging, typed errors.

See docs/architecture.md.
"""
