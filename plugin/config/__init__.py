"""Configuration: the shipped and site tables (`files`), THERACHARGE_* variables
(`environment`), the database's managed tables over the files (`managed`, whose
`effective_settings` is what the service, the worker and the command line decide with), and
admins' edits to those tables (`edits`)."""
