"""Orchestration: every trigger's path through gather → translate → decide → render → deliver.

`billing_day.run_day` is the one entry point against the EHR (the hook, notifications, the
command line, pages and the charges API call it); `hooks` turns a CDS Hooks request into that
call and the run into cards; `worker` processes recorded notifications; `files` decides a
Bundle or NDJSON file offline; `stages` holds what they share.
"""
