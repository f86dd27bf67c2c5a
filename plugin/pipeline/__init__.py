"""Orchestration: every trigger's path through gather → translate → decide → render → deliver.

`service.execute` is the one run of a billing day, whatever starts it (the hook,
notifications, backfills, pages, the command line and the charges API make a `Job` for it): the
settings in force, the EHR connection, the day's lock, the metrics (`metrics`) and the ledger
row around `billing_day.run_day`, which reads, decides, plans and writes the day; `hooks` turns
a CDS Hooks request into a job and the run into cards; `tasks` and `worker` process recorded
work; `files` decides a Bundle or NDJSON file offline; `stages` holds what they share.
"""
