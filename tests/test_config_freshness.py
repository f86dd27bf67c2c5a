"""No decision that starts after a managed table's change is made with the old table, in any
thread of any process; and the concurrent saves that make such changes all land as successive
versions, never a 500 or a lost version (issue 30, items 1 and 3)."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from plugin.config.edits import rollback, save_table, table_content
from plugin.config.effective import seed
from plugin.config.files import Settings, load_settings
from plugin.config.tables import FEES, PAYERS, fees_diff
from plugin.pipeline.runtime import Runtime
from plugin.store import Store
from plugin.store.config import StaleVersion


def _settings(tmp_path: Path, store: Store) -> Settings:
    return load_settings(
        {"THERACHARGE_INSTANCE_DIR": str(tmp_path), "THERACHARGE_DATABASE_URL": store.url}
    )


def _fees_priced(content: dict[str, Any], amount: int) -> dict[str, Any]:
    schedules = [
        dict(s, amounts=dict(s["amounts"], **{"97110": amount})) for s in content["schedules"]
    ]
    return {**content, "schedules": schedules}


def _fee_version(settings: Settings) -> int:
    return int(settings.versions.get("fees", "v0").removeprefix("v"))


def test_no_decision_after_a_fee_change_uses_the_old_fees(tmp_path: Path, store: Store) -> None:
    """Four threads of one worker process start decisions back to back while an admin (another
    process: its own Store) saves a new fee schedule every 40 ms. Each decision notes the
    newest version committed before it started; the settings it is handed must be at least
    that new. Before the fix a thread that arrived while another was loading kept the old
    tables, and every process trusted its last look for a second."""
    settings = _settings(tmp_path, store)
    seed(store, settings)
    admin = Store(store.url)  # the admin API's process
    shipped, _ = table_content(admin, settings, FEES)
    committed = [save_table(admin, settings, FEES, _fees_priced(shipped, 1), "ann", "first", None)]
    runtime = Runtime(settings, store, base_settings=settings)
    runtime.refresh()
    stale: list[tuple[int, int]] = []
    decided = [0]
    stop = threading.Event()

    def decide() -> None:
        while not stop.is_set():
            floor = committed[-1]  # saved (and committed) before this decision starts
            used = _fee_version(runtime.current())
            decided[0] += 1
            if used < floor:
                stale.append((used, floor))

    threads = [threading.Thread(target=decide) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for amount in range(2, 27):
            version = save_table(
                admin, settings, FEES, _fees_priced(shipped, amount), "ann", f"{amount}", None
            )
            committed.append(version)
            time.sleep(0.04)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert decided[0] > 100
    assert stale == [], f"{len(stale)} of {decided[0]} decisions used superseded fees"
    assert _fee_version(runtime.current()) == committed[-1]


def test_a_decision_records_the_version_of_every_table_it_used(make_app, sign) -> None:
    from tests.helpers.hooks import call, hook_body

    app = make_app(THERACHARGE_LEDGER_KEEP_PREVIEW="true")
    state = app.extensions["theracharge"]
    content, _ = table_content(state.store, state.settings, FEES)
    version = save_table(
        state.store, state.settings, FEES, _fees_priced(content, 31), "ann", "new fees", None
    )
    assert call(app, hook_body(), sign()).status_code == 200
    (run,) = state.store.runs()
    configuration = run.report["configuration"]
    assert configuration["fees"] == f"v{version}"
    assert configuration["payers"].startswith("v")
    assert any(name.startswith("mappings/") for name in configuration)


def _save_at_once(count: int, save: Any) -> tuple[list[Any], list[BaseException]]:
    """`count` threads each calling save(i) at the same moment: what they returned, and what
    they raised."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            results.append(save(i))
        except Exception as exc:  # noqa: BLE001 -- collected: the test says which
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def test_saves_at_once_without_if_match_all_land_as_successive_versions(
    tmp_path: Path, store: Store
) -> None:
    settings = _settings(tmp_path, store)
    seed(store, settings)
    shipped, _ = table_content(store, settings, FEES)
    stores = [Store(store.url) for _ in range(4)]  # four processes, one database
    for _ in range(5):
        results, errors = _save_at_once(
            4,
            lambda i: save_table(
                stores[i],
                settings,
                FEES,
                _fees_priced(shipped, 40 + i),
                f"admin{i}",
                "at once",
                None,
            ),
        )
        assert errors == []
        assert len(set(results)) == 4
    versions = store.config_versions(FEES.kind, FEES.name)
    assert [v.version for v in versions] == list(range(20, 0, -1))  # none lost, none twice
    # each version's diff is against the version before it, whoever saved that one
    for newer, older in itertools.pairwise(versions):
        assert newer.diff == fees_diff(older.content, newer.content), newer.version


def test_saves_at_once_with_the_same_if_match_keep_one_and_refuse_the_rest(
    tmp_path: Path, store: Store
) -> None:
    settings = _settings(tmp_path, store)
    seed(store, settings)
    current = store.config_current(PAYERS.kind, PAYERS.name)
    assert current is not None
    stores = [Store(store.url) for _ in range(4)]
    results, errors = _save_at_once(
        4,
        lambda i: save_table(
            stores[i], settings, PAYERS, current.content, f"admin{i}", "at once", current.version
        ),
    )
    assert len(results) == 1
    assert len(errors) == 3
    assert all(isinstance(e, StaleVersion) for e in errors), errors
    assert store.config_current(PAYERS.kind, PAYERS.name).version == current.version + 1


def test_rollbacks_and_saves_at_once_all_land(tmp_path: Path, store: Store) -> None:
    settings = _settings(tmp_path, store)
    seed(store, settings)
    shipped, _ = table_content(store, settings, FEES)
    first = save_table(store, settings, FEES, _fees_priced(shipped, 10), "ann", "first", None)
    stores = [Store(store.url) for _ in range(4)]

    def one(i: int) -> int:
        if i % 2:
            return rollback(stores[i], settings, FEES.kind, FEES.name, first, f"a{i}", "undo")
        return save_table(
            stores[i], settings, FEES, _fees_priced(shipped, 50 + i), f"a{i}", "at once", None
        )

    results, errors = _save_at_once(4, one)
    assert errors == []
    assert sorted(results) == [first + 1, first + 2, first + 3, first + 4]


@pytest.mark.parametrize("threads", [4])
def test_current_is_never_missing_while_tables_are_saved(
    tmp_path: Path, store: Store, threads: int
) -> None:
    """Reading the current version while others save: always a version, never a
    StopIteration (the current number and the versions were read in two transactions)."""
    settings = _settings(tmp_path, store)
    seed(store, settings)
    shipped, _ = table_content(store, settings, FEES)
    save_table(store, settings, FEES, _fees_priced(shipped, 1), "ann", "first", None)
    stop = threading.Event()
    missing: list[str] = []

    def read() -> None:
        reader = Store(store.url)
        while not stop.is_set():
            try:
                if reader.config_current(FEES.kind, FEES.name) is None:
                    missing.append("none")
            except Exception as exc:  # noqa: BLE001 -- collected: the test says which
                missing.append(type(exc).__name__)

    readers = [threading.Thread(target=read) for _ in range(threads)]
    for reader in readers:
        reader.start()
    try:
        for amount in range(2, 22):
            save_table(store, settings, FEES, _fees_priced(shipped, amount), "ann", "again", None)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert missing == []
