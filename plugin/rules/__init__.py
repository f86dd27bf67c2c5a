"""The billing core: pure functions on plain data, standard library only (docs/architecture.md)."""
