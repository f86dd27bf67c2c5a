"""The billing core: pure functions on plain data, standard library only (DESIGN.md)."""
