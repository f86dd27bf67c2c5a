"""TheraCharge: therapy charge capture for EHRs (kept light: see plugin.app for the service)."""
