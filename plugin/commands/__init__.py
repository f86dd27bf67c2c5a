"""The command line (`theracharge …`): `main` parses and dispatches; `process_ehr` runs the
pipeline against an EHR (`process --encounter/--since`); `demo` plays a clinic day through the
sandbox EHR."""
