"""The only code that talks HTTP to the EHR: auth, retries, paging, typed errors (DESIGN.md)."""
