"""Configuration: the shipped and site tables (`files`), THERACHARGE_* variables (`variables`),
API tokens and roles (`tokens`), the settings every decision is made with — the database's
managed tables over the files (`effective.effective_settings`, used by the service, its
notification worker and the command line alike) — and admins' edits to those tables (`edits`)."""
