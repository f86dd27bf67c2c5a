"""TheraCharge: therapy charge capture for EHRs (kept light: see plugin.web.app for the service)."""
