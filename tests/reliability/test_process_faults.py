"""Faults of our own side and of the SMART token endpoint: a worker SIGKILLed while it processes
notifications, the token endpoint down or answering garbage, and 32 concurrent hooks and
notifications for the same encounters. Nothing duplicated, every notification done once."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from plugin.gateway.client import FhirClient
from plugin.pipeline.hooks import prefetch_from
from tests.ehr import copy_key_pair, smart_server_auth
from tests.helpers.stack import notifications, notify, wait_until_done
from tests.reliability.conftest import Stack, stack_running

pytestmark = pytest.mark.slow


def test_a_worker_sigkilled_mid_notification_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, cds_key: Any
) -> None:
    with stack_running(tmp_path, cds_key) as stack:
        # Every write takes 1.5 s, so the workers are mid-task when one is killed.
        stack.proxy.add("POST", r"^/fhir/?$", "slow", times=1000, seconds=1.5)
        encounters = [f"enc-{n:04d}" for n in range(1, 9)]
        for encounter in encounters:
            assert notify(stack, encounter).json() == {"queued": True}
        time.sleep(1.0)
        victim = stack.service.workers()[0]
        os.kill(victim, signal.SIGKILL)
        done = wait_until_done(stack, len(encounters))
        assert sorted(n["encounter"] for n in done) == [f"Encounter/{e}" for e in encounters]
        assert notifications(stack, "failed") == []
        assert victim not in stack.service.workers()  # gunicorn started another in its place
        stack.proxy.clear()
        for encounter in encounters:
            stack.converged(encounter)
        again = notify(stack, encounters[0])  # the same Encounter version: recorded once
        assert again.json() == {"queued": False}


def test_the_token_endpoint_down_or_garbled_is_a_clear_error_then_recovers(
    tmp_path: Path, cds_key: Any
) -> None:
    key_path, jwks = copy_key_pair(tmp_path)
    server_auth = smart_server_auth(jwks)
    smart = {
        "THERACHARGE_SMART_CLIENT_ID": "theracharge",
        "THERACHARGE_SMART_PRIVATE_KEY": str(key_path),
        "THERACHARGE_SMART_KID": "theracharge-test",
    }
    with stack_running(tmp_path / "stack", cds_key, server_auth=server_auth, **smart) as stack:
        _load_with_token(stack, jwks_key=key_path)
        stack.proxy.add("POST", r"^/auth/token", "status", times=1000, status=503)
        down = stack.charges("enc-0001")
        assert down.status_code == 502
        assert "HTTP 503" in down.json()["message"]
        assert "/auth/token" in down.json()["message"]
        stack.proxy.clear()
        stack.proxy.add("POST", r"^/auth/token", "garbage", times=1000)
        garbled = stack.charges("enc-0001")
        assert garbled.status_code == 502
        assert "no access_token" in garbled.json()["message"]
        stack.proxy.clear()
        assert stack.ours("enc-0001") == {}
        assert stack.charges("enc-0001").status_code == 200
        stack.converged("enc-0001")


def _load_with_token(stack: Stack, jwks_key: Path) -> None:
    """The sample visits, loaded through a SMART-authenticated client of our own."""
    from plugin.gateway.factory import connect
    from plugin.sample import SampleSpec, as_transaction, generate

    client = connect(stack.settings.fhir, stack.ehr.direct_url)
    bundle = as_transaction(generate(SampleSpec(visits=4, seed=31, problem_rate=0.0)))
    client.transaction(bundle)


def test_32_concurrent_hooks_and_notifications_for_5_encounters_leave_one_item_per_line(
    stack: Stack,
) -> None:
    encounters = [f"enc-{n:04d}" for n in range(31, 36)]
    prefetched = {e: prefetch_from(FhirClient(stack.ehr.direct_url), e) for e in encounters}

    def hook(n: int) -> int:
        encounter = encounters[n % len(encounters)]
        return stack.hook(encounter, prefetched[encounter]).status_code

    def notification(n: int) -> int:
        return notify(stack, encounters[n % len(encounters)]).status_code

    with ThreadPoolExecutor(32) as pool:
        hooks = [pool.submit(hook, n) for n in range(24)]
        notes = [pool.submit(notification, n) for n in range(8)]
        statuses = [f.result() for f in hooks + notes]
    assert statuses == [200] * 32
    wait_until_done(stack, len(encounters))
    for encounter in encounters:
        stack.converged(encounter)


def test_postgresql_restarted_mid_run_loses_nothing(tmp_path: Path, cds_key: Any) -> None:
    """Notifications and hooks keep coming while our database restarts: each call is answered
    (503 while it is away, never a 500), the EHR resends what was refused, and in the end every
    notification is done once and every encounter has one ChargeItem per line."""
    from tests.pg import restart_postgres, running_postgres

    pg_folder = Path(tempfile.mkdtemp(prefix="theracharge-pg-"))  # one postgres may enter
    with (
        running_postgres(pg_folder) as database,
        stack_running(tmp_path / "stack", cds_key, THERACHARGE_DATABASE_URL=database) as stack,
    ):
        encounters = [f"enc-{n:04d}" for n in range(1, 13)]
        statuses: list[int] = []

        def deliver(encounter: str) -> None:
            for _ in range(60):  # the EHR resends a refused notification
                answer = notify(stack, encounter)
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    return
                time.sleep(0.5)

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(deliver, e) for e in encounters]
            time.sleep(0.5)
            restart_postgres(pg_folder)
            for future in futures:
                future.result()
        assert set(statuses) <= {200, 503}, statuses
        wait_until_done(stack, len(encounters), seconds=120)
        assert notifications(stack, "failed") == []
        for encounter in encounters:
            stack.converged(encounter)
    shutil.rmtree(pg_folder, ignore_errors=True)


def test_a_short_soak_of_mixed_signed_traffic_has_no_server_error(tmp_path: Path, capsys) -> None:
    """The soak's own code, for 20 seconds (the 10-minute run: RELIABILITY.md)."""
    from tests.reliability.soak import soak

    code = soak(20, tmp_path, check_memory=False)
    report = capsys.readouterr().out
    assert "server errors (5xx or no answer): 0" in report, report
    assert code == 0
    sent = int(report.split(" requests")[0].rsplit(" ", 1)[1])
    assert sent > 200, report  # every kind of request kept flowing for the whole time
    assert "hook" in report
